package workers

import "time"

// unitFlush is the flush policy's state of one dirty unit: a small pure
// state machine, fed by Add as parts arrive and asked by the scheduler
// whether the unit is Due, and how long until it will be (UntilNext). It
// knows nothing of NATS: times come from the caller.
type unitFlush struct {
	first      time.Time // when the unit became dirty (or was restarted)
	last       time.Time // when its newest part was taken
	lastStored time.Time // when its newest part was stored (server clock)
	records    int       // records waiting
}

// Add counts a part of n records, taken at now and stored (by the server's
// clock) at stored. It reports whether the unit is full (MaxRecords): the
// scheduler should look at once rather than at its next tick.
func (f *unitFlush) Add(p FlushPolicy, now, stored time.Time, n int) (full bool) {
	if f.first.IsZero() {
		f.first = now
	}
	f.last = now
	if stored.After(f.lastStored) {
		f.lastStored = stored
	}
	f.records += n
	return f.records >= p.MaxRecords
}

// Restart is the state of a unit that still holds parts after an upload
// settled the others (they were stored after its rebuild began): it starts
// its delays again from now with the records that are left.
func (f *unitFlush) Restart(now time.Time, records int) {
	f.first, f.last, f.records = now, now, records
}

// Due reports whether the unit should be uploaded now: MaxDelay after it
// became dirty, Quiet after its last part was taken, or once MaxRecords
// wait. caughtUp says the consumer has delivered everything stored for the
// destination.
//
// Quiet is also judged by when the unit's newest data was stored: once the
// consumer has caught up (nothing stored is left to deliver), a unit whose
// data was all stored Quiet ago has been quiet that long already. A
// backlog read after a restart, or by a new worker, is then sent as soon
// as it is read, not Quiet after. (Stored times are the server's clock: a
// worker clock running ahead only makes units due sooner, never changes
// what is sent.)
func (f *unitFlush) Due(p FlushPolicy, now time.Time, caughtUp bool) bool {
	return f.UntilNext(p, now, caughtUp) == 0
}

// UntilNext is how long until the unit is due, 0 when it is.
func (f *unitFlush) UntilNext(p FlushPolicy, now time.Time, caughtUp bool) time.Duration {
	if f.records >= p.MaxRecords {
		return 0
	}
	d := f.first.Add(p.MaxDelay).Sub(now)
	d = min(d, f.last.Add(p.Quiet).Sub(now))
	if caughtUp && !f.lastStored.IsZero() {
		d = min(d, f.lastStored.Add(p.Quiet).Sub(now))
	}
	return max(d, 0)
}
