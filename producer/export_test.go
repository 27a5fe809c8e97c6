package producer

// SetSpoolInFlight lets a test watch the parts in flight of PublishSpool.
func SetSpoolInFlight(f func(n int)) { spoolInFlight = f }
