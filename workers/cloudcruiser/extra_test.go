package cloudcruiser

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// Issues 17.6 and 17.8: the configuration chooses the extra typed fields
// (x_ columns and tags, each as FLOAT, INT or STRING), and the costs
// beside BilledCost go as FLOAT fields.
func TestExtraTypedFieldsAndCosts(t *testing.T) {
	extra := []ExtraField{
		{From: "x_Cores", Type: TypeInt},                      // a string column sent as INT
		{From: "x_Ratio"},                                     // a decimal: FLOAT by its kind
		{From: "tag:team", Name: "Team"},                      // a tag: STRING
		{From: "tag:weight", Name: "Weight", Type: TypeFloat}, // a tag holding a number
		{From: "tag:bad", Name: "Bad", Type: TypeInt},         // not an integer: left out
	}
	d := testDest(t, Settings{ExtraFields: extra})
	b := rowBuilder{m: &d.m}
	r := messages.UsageRecord{ChargePeriodStart: tRow, BillingAccountId: "a", ProviderName: "p", ServiceName: "s", SkuId: "m",
		ConsumedQuantity: messages.MustDecimal("1"), ConsumedUnit: "u", BilledCost: messages.MustDecimal("10.00"),
		EffectiveCost: messages.MustDecimal("8.50"), ListCost: messages.MustDecimal("12.000001"),
		Ext:  map[string]messages.ExtValue{"Cores": messages.ExtStr("8"), "Ratio": messages.ExtDec(messages.MustDecimal("0.25")), "Project": messages.ExtStr("apollo")},
		Tags: map[string]string{"team": "core", "weight": "1.5", "bad": "1.5", "env": "prod"}}
	row, err := b.appendRow(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	got := string(row)
	for _, want := range []string{`"Cost":10.00,"Effective Cost":8.50,"List Cost":12.000001`, `"x_Cores":8`, `"x_Ratio":0.25`, `"Team":"core"`, `"Weight":1.5`} {
		if !strings.Contains(got, want) {
			t.Errorf("row lacks %s: %s", want, got)
		}
	}
	for _, absent := range []string{"Bad", "x_Project", "tag:env", "tag:team"} {
		if strings.Contains(got, absent) {
			t.Errorf("row has %s, which the configuration does not choose: %s", absent, got)
		}
	}
	if !json.Valid(row) {
		t.Fatalf("invalid JSON %s", row)
	}

	// Against a sandbox that declares the fields and their types, and
	// refuses undeclared ones, the file is accepted.
	e := newSandbox(t, sandbox.Config{DeclaredExtraFieldsOnly: true, ExtraFieldTypes: map[string]string{
		"x_Cores": TypeInt, "x_Ratio": TypeFloat, "Team": TypeString, "Weight": TypeFloat,
		FieldEffectiveCost: TypeFloat, FieldListCost: TypeFloat}}, nil)
	dd := e.dest(t, Settings{ExtraFields: extra})
	start := time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC)
	recs := hourRecords(50, start, 24*time.Hour)
	for i := range recs {
		recs[i].Ext = r.Ext
		recs[i].Tags = r.Tags
		recs[i].EffectiveCost, recs[i].ListCost = r.EffectiveCost, r.ListCost
	}
	j := newFakeJob(dd, []workers.Unit{dd.DateUnit(start)}, recs)
	if err := dd.Deliver(context.Background(), j); err != nil || len(j.UnitRejects) != 0 {
		t.Fatalf("deliver: %v, refused %v", err, j.UnitRejects)
	}
	checkDate(t, e, "2024-08-16", recs)

	for _, c := range []struct {
		f    ExtraField
		want string
	}{
		{ExtraField{From: "Project"}, "want x_<Name>"},
		{ExtraField{From: "x_P", Type: "DOUBLE"}, "want FLOAT, INT or STRING"},
		{ExtraField{From: "tag:a", Name: "Resource ID"}, "documented field"},
		{ExtraField{From: "tag:a", Name: "list cost"}, "documented field"},
	} {
		_, err := New("cc", Settings{Token: config.NewSecret(testToken), ExtraFields: []ExtraField{c.f}})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "settings.extra_fields[0]") {
			t.Errorf("%+v: err %v, want %q", c.f, err, c.want)
		}
	}
}
