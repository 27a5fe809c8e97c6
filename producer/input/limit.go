package input

import (
	"bytes"
	"fmt"
	"io"
)

// LimitReader bounds a (decompressed) input: the whole of it to max bytes
// and the record being read to the budget its reader sets around each
// record (Record). An input that ends exactly at a limit is read to its
// end; one byte more is the error. It counts the newlines read, for the line an error
// names. Once a limit is crossed every Read returns the same *LimitError,
// which wraps ErrTooLarge. Package input reads every format through one,
// and producer/collect its report files.
type LimitReader struct {
	r       io.Reader
	n, max  int64
	maxWhat string
	budget  int64 // bytes left for the current record; < 0: no record limit
	what    string
	lines   int
	err     error
}

// NewLimitReader reads r to at most max bytes; maxWhat says that limit in
// the error ("the input is larger than ...").
func NewLimitReader(r io.Reader, max int64, maxWhat string) *LimitReader {
	return &LimitReader{r: r, max: max, maxWhat: maxWhat, budget: -1}
}

// LimitError is a limit a LimitReader crossed.
type LimitError struct {
	Line  int    // the line reading stopped on: newlines read before it, plus one
	Limit string // which limit ("a CSV record longer than ...")
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("line %d: %s: reading stopped", e.Line, e.Limit)
}

func (e *LimitError) Unwrap() error { return ErrTooLarge }

// Record sets the bytes the next record may take (with the reader's own
// read-ahead), described by what in the error; budget < 0 lifts it.
func (l *LimitReader) Record(budget int64, what string) { l.budget, l.what = budget, what }

// Lines is the number of newlines read.
func (l *LimitReader) Lines() int { return l.lines }

// Max is the input's limit.
func (l *LimitReader) Max() int64 { return l.max }

// Err is the limit crossed, if one was.
func (l *LimitReader) Err() error { return l.err }

func (l *LimitReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if l.n >= l.max {
		// At exactly max bytes the input may end there.
		var one [1]byte
		if n, err := io.ReadFull(l.r, one[:]); n == 0 && err != nil {
			return 0, err
		}
		l.err = &LimitError{Line: l.lines + 1, Limit: l.maxWhat}
		return 0, l.err
	}
	if l.budget == 0 {
		// The same at a record's limit: the input may end there.
		var one [1]byte
		if n, err := io.ReadFull(l.r, one[:]); n == 0 && err != nil {
			return 0, err
		}
		l.err = &LimitError{Line: l.lines + 1, Limit: l.what}
		return 0, l.err
	}
	if int64(len(p)) > l.max-l.n {
		p = p[:l.max-l.n]
	}
	if l.budget > 0 && int64(len(p)) > l.budget {
		p = p[:l.budget]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.budget > 0 {
		l.budget -= int64(n)
	}
	l.lines += bytes.Count(p[:n], []byte{'\n'})
	return n, err
}
