package cloudcruiser

import (
	"bufio"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// largeRecord writes record i of the large upload; it returns its quantity
// in millionths and its cost in billionths, for the exact expected sums.
func largeRecord(w io.Writer, i int) (qtyMicro, costNano int64) {
	sec := i % 86400
	start := fmt.Sprintf("2024-03-01 %02d:%02d:%02d", sec/3600, sec/60%60, sec%60)
	qtyMicro = int64(i%1000)*1_000_000 + int64(i%999_983)
	costNano = int64(i) * 7 % 1_000_000_000
	qty := fmt.Sprintf("%d.%06d", qtyMicro/1_000_000, qtyMicro%1_000_000)
	if i%2 == 1 {
		qty = `"` + qty + `"` // both accepted forms
	}
	fmt.Fprintf(w, `{"Usage Start":%q,"Usage End":%q,"Account ID":"acct-%d","Account Name":"Account","Provider":"AWS",`+
		`"Provider Type":"Private","Product":"EC2","Meter ID":"meter-%d","Meter Name":"BoxUsage","Quantity":%s,"Units":"Hrs",`+
		`"Cost":"0.%09d","Resource ID":"i-%08x","Project":"apollo","Cores":4}`,
		start, start, i%97, i%13, qty, costNano, i)
	return qtyMicro, costNano
}

// TestLargeStreamedUpload sends 200,000 records through an io.Pipe, so the
// client never holds the body either, and checks exact totals, the keep
// policy and that the server did not retain the body.
func TestLargeStreamedUpload(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	e := newEnv(t, Config{})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	sums := make(chan [2]int64, 1)
	go func() {
		var q, c int64
		err := func() error {
			part, err := mw.CreateFormFile("data", "big.json")
			if err != nil {
				return err
			}
			bw := bufio.NewWriterSize(part, 64<<10)
			bw.WriteString("[")
			for i := range n {
				if i > 0 {
					bw.WriteString(",\n")
				}
				qm, cn := largeRecord(bw, i)
				q += qm
				c += cn
			}
			bw.WriteString("]")
			if err := bw.Flush(); err != nil {
				return err
			}
			return mw.Close()
		}()
		sums <- [2]int64{q, c}
		pw.CloseWithError(err)
	}()

	start := time.Now()
	r := e.put("2024-03-01?zoneOffset=-07:01:30", mw.FormDataContentType(), pr, "Bearer "+testToken)
	expectOK(t, r, n)
	t.Logf("%d records in %v", n, time.Since(start))
	s := <-sums

	got := e.srv.Dates()["2024-03-01"]
	checkTotal(t, got, n, decimal.New(s[0], -6).String(), decimal.New(s[1], -9).String(), 1)
	wantKept := n
	if n > DefaultKeepRecordsUpTo {
		wantKept = DefaultKeepFirstRecords
	}
	recs := e.srv.Records("2024-03-01")
	if got.Kept != wantKept || len(recs) != wantKept {
		t.Fatalf("kept %d / %d records, want %d", got.Kept, len(recs), wantKept)
	}
	// The kept records are the first ones, in order.
	for _, i := range []int{0, 1, wantKept - 1} {
		qm := int64(i%1000)*1_000_000 + int64(i%999_983)
		want := Record{
			UsageStart: time.Date(2024, 3, 1, 0, 0, i%86400, 0, time.FixedZone("", -(7*3600+90))).UTC(),
			AccountID:  fmt.Sprintf("acct-%d", i%97),
			MeterID:    fmt.Sprintf("meter-%d", i%13),
			Quantity:   decimal.New(qm, -6).String(),
			Cost:       decimal.New(int64(i)*7%1_000_000_000, -9).String(),
		}
		if recs[i] != want {
			t.Errorf("record %d: %+v, want %+v", i, recs[i], want)
		}
	}

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if ups := e.srv.Uploads(); len(ups) != 1 || ups[0].Bytes < int64(n)*200 {
		t.Fatalf("upload log %+v", ups)
	} else if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > ups[0].Bytes/4 {
		t.Fatalf("heap grew by %d bytes for a %d-byte upload: the server keeps too much", grown, ups[0].Bytes)
	}
}

// A record invalid deep inside a large streamed upload rejects all of it.
func TestLargeUploadInvalidLateRecord(t *testing.T) {
	e := newEnv(t, Config{KeepRecordsUpTo: 100, KeepFirstRecords: 10})
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, _ := mw.CreateFormFile("data", "big.json")
		bw := bufio.NewWriter(part)
		bw.WriteString("[")
		for i := range 5000 {
			if i > 0 {
				bw.WriteString(",")
			}
			largeRecord(bw, i)
		}
		bw.WriteString(`,{"Usage Start":"2024-03-01 10:00"}]`)
		bw.Flush()
		pw.CloseWithError(mw.Close())
	}()
	req, _ := http.NewRequest(http.MethodPut, e.ts.URL+UploadPath+"2024-03-01", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+testToken)
	expectErr(t, e.do(req), 400, "record index 5000", "missing required field(s)")
	if len(e.srv.Dates()) != 0 {
		t.Fatal("stored part of a rejected upload")
	}
}

// The keep policy with small limits: totals exact, first records kept.
func TestKeepPolicy(t *testing.T) {
	e := newEnv(t, Config{KeepRecordsUpTo: 5, KeepFirstRecords: 2})
	var recs []rec
	for i := range 6 {
		recs = append(recs, validRec(fmt.Sprintf("2024-03-01 %02d:00", i), fmt.Sprint(i), "m", "1"))
	}
	expectOK(t, e.upload("2024-03-01", recs[:5]...), 5)
	if got := e.srv.Records("2024-03-01"); len(got) != 5 {
		t.Fatalf("kept %d, want all 5", len(got))
	}
	expectOK(t, e.upload("2024-03-01", recs...), 6)
	got := e.srv.Records("2024-03-01")
	if len(got) != 2 || got[0].AccountID != "0" || got[1].AccountID != "1" || e.srv.Dates()["2024-03-01"].Kept != 2 {
		t.Fatalf("kept %+v", got)
	}
	checkTotal(t, e.srv.Dates()["2024-03-01"], 6, "6", "0", 2)
}
