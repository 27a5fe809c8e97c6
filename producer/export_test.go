package producer

// SetSpoolInFlight lets a test watch the parts in flight of PublishSpool.
func SetSpoolInFlight(f func(n int)) { spoolInFlight = f }

// SetSpoolRecords makes SpoolFile take every input's records one by one
// (Spool.Add), as it did before CSV rows came encoded ahead: the old path,
// for a test to compare with.
func SetSpoolRecords(on bool) { spoolRecords = on }
