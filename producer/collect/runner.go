package collect

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
)

// Outcome is one collector's run.
type Outcome struct {
	Collector string
	Result    *Result
	Err       error
}

// RunOnce runs every collector once, concurrently, and returns their
// outcomes in the collectors' order.
func RunOnce(ctx context.Context, cs []*Collector) []Outcome {
	out := make([]Outcome, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Run(ctx)
			out[i] = Outcome{Collector: c.Name(), Result: res, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// RunLoop runs every collector on its schedule until ctx ends; report is
// called after every run (from the collectors' goroutines, one at a time).
func RunLoop(ctx context.Context, cs []*Collector, report func(Outcome)) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Loop(ctx, func(res *Result, err error) {
				if report == nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				report(Outcome{Collector: c.Name(), Result: res, Err: err})
			})
		}()
	}
	wg.Wait()
}

// NewUUID returns a random (version 4) UUID, for correlation ids.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
