package collect

// Report files are bounded like producer/input's (issue 12 item 9): a
// record, a cell and the decompressed file. Before, a gzip of 1 GiB of NULs
// was read as one field of 1 GiB (its raw bytes held twice), and an error
// could quote a cell whole.

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

const limitsHeader = "Org ID (realmId),Usage Amount (billableValue)\n"

// gzBomb is n concatenated gzip members of 1 MiB of chunk repeated: about
// 1 KiB compressed per MiB.
func gzBomb(chunk string, n int) io.Reader {
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zw.Write(bytes.Repeat([]byte(chunk), (1<<20)/len(chunk)))
	zw.Close()
	rs := make([]io.Reader, n)
	for i := range rs {
		rs[i] = bytes.NewReader(member.Bytes())
	}
	return io.MultiReader(rs...)
}

// readAll reads a report file to its end and returns the row errors and
// the error that ended it.
func readAll(t *testing.T, body io.Reader) (rows []*RowError, good int, err error) {
	t.Helper()
	c, err := NewCSV(body)
	if err != nil {
		return nil, 0, err
	}
	for {
		err := c.Next()
		if errors.Is(err, io.EOF) {
			return rows, good, nil
		}
		var re *RowError
		if errors.As(err, &re) {
			rows = append(rows, re)
			continue
		}
		if err != nil {
			return rows, good, err
		}
		good++
	}
}

// checkFatal checks err ends the reading as a permanent size-limit error
// that says which limit and where, in a few hundred bytes.
func checkFatal(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, ErrTooLarge) || Transient(err) {
		t.Fatalf("err = %.300v; want a permanent ErrTooLarge", err)
	}
	if len(err.Error()) > 300 || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %.300q (%d bytes); want at most 300 bytes with %q", err.Error(), len(err.Error()), want)
	}
}

// A gzip of 1 GiB of NULs (about 1 MB) fails at the record limit, in
// bounded memory, naming line 1, without quoting what it read.
func TestReportGzipNulBomb(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, _, err := readAll(t, gzBomb("\x00", 1024))
	runtime.ReadMemStats(&after)
	checkFatal(t, err, "header: line 1: a CSV record longer than 16777216 bytes")
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("allocated %d MiB reading the bomb", alloc>>20)
	}
}

// A gzip of well-formed short rows stops at the decompressed size limit,
// naming it (lowered here from 4 GiB to 8 MiB: the same code path).
func TestReportDecompressedSizeLimit(t *testing.T) {
	defer SetMaxReportBytes(8 << 20)()
	body := io.MultiReader(bytes.NewReader(gz(limitsHeader)), gzBomb("o1,1.5\n", 64))
	_, good, err := readAll(t, body)
	checkFatal(t, err, "the file is larger than 8388608 bytes decompressed")
	if good == 0 || good > (8<<20)/7 {
		t.Fatalf("%d rows read before the limit", good)
	}

	// A file of exactly the limit is read whole.
	file := limitsHeader + strings.Repeat("o1,1.5\n", 100)
	defer SetMaxReportBytes(int64(len(file)))()
	if _, good, err := readAll(t, strings.NewReader(file)); err != nil || good != 100 {
		t.Fatalf("a file of exactly the limit: %d rows, err %v", good, err)
	}
}

// One line of 20 MiB (no newline in it) after good rows ends the reading
// with an error naming its line; a quoted field spanning many lines is one
// record and is bounded the same way, at the line where it starts.
func TestReportHugeRecord(t *testing.T) {
	for name, tc := range map[string]struct {
		file string
		line string
	}{
		"line":         {limitsHeader + "o1,1\no2,2\no3," + strings.Repeat("9", 20<<20) + "\no4,4\n", "line 4: a CSV record longer than"},
		"quoted lines": {limitsHeader + "o1,1\n\n\"" + strings.Repeat("a\n", 9<<20) + "\",1\n", "line 4: a CSV record longer than"},
	} {
		t.Run(name, func(t *testing.T) {
			_, good, err := readAll(t, strings.NewReader(tc.file))
			checkFatal(t, err, tc.line)
			if good < 1 {
				t.Fatalf("%d good rows before the huge record", good)
			}
		})
	}
}

// A cell over MaxCellBytes rejects its row alone, naming the line and the
// column and not quoting the cell; the rows after it are read.
func TestReportOversizedCell(t *testing.T) {
	file := limitsHeader + "o1,1\no2," + strings.Repeat("7", MaxCellBytes+1) + "\no3,3\n"
	rows, good, err := readAll(t, strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if good != 2 || len(rows) != 1 {
		t.Fatalf("%d good rows, rejected %v; want 2 and one", good, rows)
	}
	e := rows[0]
	if e.Line != 3 || e.Column != "billableValue" || !strings.Contains(e.Reason, "cell limit") || len(e.Error()) > 300 {
		t.Fatalf("rejected %.300q", e.Error())
	}
	// The header's cells are bounded too.
	_, _, err = readAll(t, strings.NewReader("a,"+strings.Repeat("b", MaxCellBytes+1)+"\n"))
	checkFatal(t, err, "header: line 1: column 2 is")
}

// Values quoted in errors are clipped: a platform's reason, a header in
// a missing-column error.
func TestReportErrorsClipValues(t *testing.T) {
	if q := Quote(strings.Repeat("x", 100000)); len(q) > 100 || !strings.Contains(q, "100000 bytes") {
		t.Fatalf("Quote: %q", q)
	}
	if q := Quote("1.5x"); q != `"1.5x"` {
		t.Fatalf("Quote of a short value: %s", q)
	}
	c, err := NewCSV(strings.NewReader(strings.Repeat("c", 500000) + ",b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Require("realmId"); err == nil || len(err.Error()) > 300 {
		t.Fatalf("Require: a %d-byte error", len(err.Error()))
	}
}
