package demo

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	sbcc "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	"github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/here"
	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/messages"
	czdest "github.com/usagefleet/usagefleet/workers/cloudzero"
)

// lightFaults is what every emulator injects when Options.Faults is empty.
const lightFaults = "500@0.03,429:retry=1x1"

// faultSpecs reads Options.Faults: one fault.ParseSpec spec for every
// emulator, or groups separated by ';', where a group "<emulator>=<spec>"
// sets that emulator's spec alone ("none" for none) and the other groups
// are joined into the spec of every other emulator. Empty means the light
// default everywhere; "none" means none.
func faultSpecs(spec string) (map[string]string, error) {
	if spec == "" {
		spec = lightFaults
	}
	var base []string
	own := map[string]string{}
	for _, g := range strings.Split(spec, ";") {
		g = strings.TrimSpace(g)
		if g == "" || g == "none" {
			continue
		}
		if name, s, ok := strings.Cut(g, "="); ok && !strings.ContainsAny(name, ":@") {
			if !slices.Contains(serve.Names(), name) {
				return nil, fmt.Errorf("faults %q: %q is not an emulator (have %s)", g, name, strings.Join(serve.Names(), ", "))
			}
			if s == "none" {
				s = ""
			}
			own[name] = s
			continue
		}
		base = append(base, g)
	}
	out := map[string]string{}
	for _, n := range serve.Names() {
		if s, ok := own[n]; ok {
			out[n] = s
		} else {
			out[n] = strings.Join(base, ",")
		}
	}
	return out, nil
}

func webhookConfig(token string) sbwebhook.Config {
	return sbwebhook.Config{Token: token, MaxBodyBytes: 256 << 10}
}

func cloudzeroConfig(conn, key string) cloudzero.Config {
	return cloudzero.Config{Connections: map[string]string{conn: key}}
}

// cloudcruiserConfig keeps every record of every date (up to keep a date),
// so the demo can tell the feeds apart in a date that holds several.
func cloudcruiserConfig(token string, keep int, seed int64) sbcc.Config {
	return sbcc.Config{Token: token, KeepRecordsUpTo: max(keep, sbcc.DefaultKeepRecordsUpTo), Seed: seed}
}

// The report emulators take a moment to generate a report, so the
// collectors poll as they would against the real APIs.
const reportDelay = 200 * time.Millisecond

func acronisConfig(clientID, secret string, seed int64) acronis.Config {
	return acronis.Config{ClientID: clientID, ClientSecret: secret, GenerationDelay: reportDelay, Seed: seed}
}

func hereConfig(keyID, secret string, seed int64) here.Config {
	return here.Config{AccessKeyID: keyID, AccessKeySecret: secret, GenerationDelay: reportDelay, Seed: seed,
		Realms: map[string][]string{hereRealm: hereSubAccounts}}
}

// cloudzeroHeld is what the CloudZero sandbox holds for the connection,
// leaving out the placeholder rows the destination writes to clear an
// emptied hour (none in the demo, unless every record of an hour failed).
func cloudzeroHeld(sb *serve.Running, conn string) (int, messages.Decimal) {
	var sum messages.Sum
	rows := 0
	for hour, t := range sb.CloudZero.Hours(conn) {
		rows += t.Rows
		sum.Add(messages.FromBig(t.Cost))
		if t.Rows == 1 {
			for _, r := range sb.CloudZero.Rows(conn, hour) {
				if r["lineitem/id"] == czdest.PlaceholderLineItemID {
					rows--
				}
			}
		}
	}
	return rows, sum.Decimal()
}

// held is what a store holds: records, exact quantity and cost.
type held struct {
	Records  int
	Quantity messages.Sum
	Cost     messages.Sum
}

// ccHeld is what the Cloud Cruiser sandbox holds over all its dates (its
// exact totals), and split by source: a record belongs to the collector
// whose accounts hold it (sourceOf), else to the demo feed. split is false
// when a date kept fewer records than it holds (cannot happen with the
// demo's keep limit).
type ccHeld struct {
	All      held
	BySource map[string]*held
	Dates    map[string]sbcc.DateTotal
	Split    bool
}

func cloudcruiserHeld(sb *sbcc.Server, sourceOf func(account string) string) ccHeld {
	h := ccHeld{BySource: map[string]*held{}, Dates: sb.Dates(), Split: true}
	for date, t := range h.Dates {
		h.All.Records += t.Records
		h.All.Quantity.Add(messages.FromBig(t.Quantity))
		h.All.Cost.Add(messages.FromBig(t.Cost))
		if t.Kept != t.Records {
			h.Split = false
			continue
		}
		for _, r := range sb.Records(date) {
			src := sourceOf(r.AccountID)
			s := h.BySource[src]
			if s == nil {
				s = &held{}
				h.BySource[src] = s
			}
			s.Records++
			s.Quantity.Add(decimalOf(r.Quantity))
			s.Cost.Add(decimalOf(r.Cost))
		}
	}
	return h
}

// decimalOf reads the sandbox's canonical decimal text ("" is none).
func decimalOf(s string) messages.Decimal {
	if s == "" {
		return messages.Decimal{}
	}
	d, err := messages.ParseDecimal(s)
	if err != nil { // the sandbox stored it as a decimal
		panic(err)
	}
	return d
}
