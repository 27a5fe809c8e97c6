package cloudzero

import (
	"io"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/workers"
)

// A body goes back to the pool only when the sender and every reader are
// done with it, however often a reader is closed.
func TestSharedBodyOutlivesItsReaders(t *testing.T) {
	b := newSharedBody([]byte("body"))
	r1 := b.reader()
	r2 := b.reader() // a re-send's GetBody
	b.done()         // the sender
	if b.buf == nil {
		t.Fatal("released while two readers are open")
	}
	_ = r1.Close()
	_ = r1.Close()
	if b.buf == nil {
		t.Fatal("a double Close released it while a reader is open")
	}
	got, _ := io.ReadAll(r2)
	if string(got) != "body" {
		t.Fatalf("read %q", got)
	}
	_ = r2.Close()
	if b.buf != nil {
		t.Fatal("not released once everyone was done")
	}
}

// The digest a request's idempotency key comes from changes with which
// records the rows are, their encoded size, the operation and the month,
// and only with those.
func TestDigestTellsBodiesApart(t *testing.T) {
	build := func(op, month string, rows ...struct {
		seq   uint64
		index int
		row   string
	}) string {
		p := &packer{monthText: month, buf: make([]byte, headRoom), segs: []segment{{unit: hourUnit(time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC))}}}
		for _, r := range rows {
			p.buf = append(p.buf, ',')
			p.buf = append(p.buf, r.row...)
			m := rowMeta{end: len(p.buf), ref: workers.RecordRef{Seq: r.seq, Index: r.index}}
			if r.seq == 0 {
				m.placeholder = true
			}
			p.rows = append(p.rows, m)
		}
		return string(p.digest(op, 0, len(p.rows)))
	}
	type row = struct {
		seq   uint64
		index int
		row   string
	}
	m := "2024-08-01T00:00:00Z"
	base := build(opReplaceHourly, m, row{5, 0, "{a}"}, row{5, 1, "{bb}"}, row{7, 0, "{c}"})
	same := build(opReplaceHourly, m, row{5, 0, "{x}"}, row{5, 1, "{yy}"}, row{7, 0, "{z}"})
	if base != same {
		t.Fatal("the same records of the same sizes gave another digest")
	}
	for name, d := range map[string]string{
		"other op":      build(opSum, m, row{5, 0, "{a}"}, row{5, 1, "{bb}"}, row{7, 0, "{c}"}),
		"other month":   build(opReplaceHourly, "2024-09-01T00:00:00Z", row{5, 0, "{a}"}, row{5, 1, "{bb}"}, row{7, 0, "{c}"}),
		"a row left":    build(opReplaceHourly, m, row{5, 0, "{a}"}, row{7, 0, "{c}"}),
		"other record":  build(opReplaceHourly, m, row{5, 0, "{a}"}, row{5, 2, "{bb}"}, row{7, 0, "{c}"}),
		"other part":    build(opReplaceHourly, m, row{5, 0, "{a}"}, row{5, 1, "{bb}"}, row{8, 0, "{c}"}),
		"other size":    build(opReplaceHourly, m, row{5, 0, "{a}"}, row{5, 1, "{bbb}"}, row{7, 0, "{c}"}),
		"a placeholder": build(opReplaceHourly, m, row{5, 0, "{a}"}, row{5, 1, "{bb}"}, row{0, 0, "{p}"}),
	} {
		if d == base {
			t.Errorf("%s: the same digest", name)
		}
	}
}
