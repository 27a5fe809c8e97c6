package input

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// nulBomb is a gzip of 1 GiB of NUL bytes, about 1 MB: 1,024
// concatenated gzip members of 1 MiB each (one compressed once).
func nulBomb(t *testing.T) (io.Reader, int) {
	t.Helper()
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	zw.Write(zeros)
	zw.Close()
	var rs []io.Reader
	for i := 0; i < 1024; i++ {
		rs = append(rs, bytes.NewReader(member.Bytes()))
	}
	return io.MultiReader(rs...), 1024 * member.Len()
}

// A small gzip of 1 GiB of NULs fails fast, in bounded memory, with an
// error that says which limit, and without quoting the gigabyte.
func TestGzipNulBomb(t *testing.T) {
	for _, f := range []Format{Auto, CSV, NDJSON, JSONArray} {
		r, size := nulBomb(t)
		if size > 2<<20 {
			t.Fatalf("the bomb is %d bytes compressed", size)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		res, err := ReadWith("bomb.gz", r, Options{Format: f}, func(Row) error { t.Fatal("a row from a bomb"); return nil })
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		for _, e := range res.Errors {
			msg += "\n" + e.Error()
		}
		if err == nil && len(res.Errors) == 0 {
			t.Fatalf("%v: the bomb was read without a problem", f)
		}
		if len(msg) > 2000 {
			t.Errorf("%v: a %d-byte error message", f, len(msg))
		}
		if !strings.Contains(msg, "longer than") && !strings.Contains(msg, "larger than") && !(f == JSONArray && strings.Contains(msg, "invalid character '\\x00'")) {
			t.Errorf("%v: the error does not name a limit: %s", f, msg)
		}
		if alloc > 256<<20 {
			t.Errorf("%v: allocated %d MiB reading the bomb", f, alloc>>20)
		}
	}
}

func TestLimits(t *testing.T) {
	header := "ChargePeriodStart,ResourceId\n"
	tests := []struct {
		name   string
		src    string
		opt    Options
		errIs  error  // the reading fails with this
		inErrs string // or this is among the row errors
	}{
		{"total size", header + strings.Repeat("2024-05-01T10:00:00Z,r\n", 1000), Options{MaxBytes: 4096}, ErrTooLarge, ""},
		{"csv record", header + "2024-05-01T10:00:00Z,\"" + strings.Repeat("a\n", 9<<20) + "\"\n", Options{}, ErrTooLarge, ""},
		{"csv cell", header + "2024-05-01T10:00:00Z," + strings.Repeat("a", MaxCellBytes+1) + "\n", Options{}, nil, "more than the 1048576-byte cell limit"},
		{"json element", "[" + `{"ResourceId":"` + strings.Repeat("a", 17<<20) + `"}]`, Options{}, ErrTooLarge, ""},
		{"ndjson line", `{"ResourceId":"` + strings.Repeat("a", 17<<20) + `"}` + "\n", Options{}, nil, "line longer than"},
		{"long value clipped", header + "2024-05-01T10:00:00Z," + strings.Repeat("é", 5000) + "\n", Options{}, nil, "longer than 2048 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := ReadWith("f", strings.NewReader(tc.src), tc.opt, func(Row) error { return nil })
			if tc.errIs != nil {
				if !errors.Is(err, tc.errIs) || len(err.Error()) > 300 {
					t.Fatalf("err = %v, want %v", err, tc.errIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range res.Errors {
				if len(e.Error()) > 300 {
					t.Errorf("a %d-byte error", len(e.Error()))
				}
				found = found || strings.Contains(e.Error(), tc.inErrs)
			}
			if !found {
				t.Errorf("errors %v lack %q", res.Errors, tc.inErrs)
			}
		})
	}
}
