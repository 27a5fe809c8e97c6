package collect

import "time"

// SetDeadTimeouts shortens the dead-letter ack wait and retry time for a
// test; the returned func restores them.
func SetDeadTimeouts(ack, retryFor time.Duration) (restore func()) {
	old := deadTimeouts
	deadTimeouts.ack, deadTimeouts.retryFor = ack, retryFor
	return func() { deadTimeouts = old }
}

// SetMaxReportBytes lowers the decompressed size limit of a report file
// for a test; the returned func restores it.
func SetMaxReportBytes(n int64) (restore func()) {
	old := maxReportBytes
	maxReportBytes = n
	return func() { maxReportBytes = old }
}
