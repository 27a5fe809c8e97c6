package cloudcruiser

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// uploadPath is the documented resource path; the accounting date follows.
const uploadPath = "/api/upload/v1/schema/usage/daily/"

// Destination uploads usage to one Cloud Cruiser Upload Usage API
// collection, one file per accounting date. Build it with New or through
// the configuration (`type: cloudcruiser`). It holds no mutable state and
// is safe for concurrent use: the pool uploads different dates in parallel
// and one date at a time across the fleet (the lease key is the date).
type Destination struct {
	name          string
	endpoint      string        // base URL + uploadPath
	token         config.Secret // sent in Authorization only; never logged or wrapped into errors
	offset        int           // seconds east of UTC
	loc           *time.Location
	query         string        // "zoneOffset=..." or "" for UTC
	timeout       time.Duration // stall_timeout
	stallKey      string        // the settings key timeout came from
	contentLength bool
	m             mapper
	deprecated    []string // notices of deprecated settings used
}

var (
	_ workers.Destination = (*Destination)(nil)
	_ workers.RowWarner   = (*Destination)(nil)
	_ workers.Deprecated  = (*Destination)(nil)
)

// Deprecated implements workers.Deprecated.
func (d *Destination) Deprecated() []string { return d.deprecated }

// repairsCounter counts the records whose metadata was repaired or left
// out so their cost could be delivered, by destination and kind (Repair:
// "meter_id", "quantity", ...). A record encoded again (a retried job, a
// content_length measure) is counted again.
var repairsCounter = func() metric.Int64Counter {
	c, err := otel.Meter("usagefleet/workers/cloudcruiser").Int64Counter("usagefleet.cloudcruiser.repairs",
		metric.WithDescription("Records whose metadata Cloud Cruiser cannot take was repaired or left out while their cost was delivered"),
		metric.WithUnit("{record}"))
	if err != nil {
		panic(err) // only for an invalid instrument name
	}
	return c
}()

// builders keeps rowBuilders (their scratch slices) between encodings.
var builders = sync.Pool{New: func() any { return new(rowBuilder) }}

// EncodeRow appends r's row to dst, or says why r cannot be sent (a
// *RowError). The pool encodes rows ahead of the upload with it.
func (d *Destination) EncodeRow(dst []byte, r *messages.UsageRecord) ([]byte, error) {
	dst, _, err := d.EncodeRowWarnings(dst, r)
	return dst, err
}

// EncodeRowWarnings is EncodeRow that also says how many warnings r's ack
// counts: 1 when metadata was repaired or left out (Repair), else 0. Each
// repaired record is counted in usagefleet.cloudcruiser.repairs.
func (d *Destination) EncodeRowWarnings(dst []byte, r *messages.UsageRecord) ([]byte, int, error) {
	b := builders.Get().(*rowBuilder)
	if b.m != &d.m {
		b.m, b.clash = &d.m, nil // the clash cache depends on the tag prefix
	}
	dst, rep, rerr := b.appendRowRepaired(dst, r)
	builders.Put(b)
	if rerr != nil {
		return dst, 0, rerr
	}
	if rep == 0 {
		return dst, 0, nil
	}
	for _, k := range rep.Kinds() {
		repairsCounter.Add(context.Background(), 1, metric.WithAttributes(
			attribute.String("destination", d.name), attribute.String("kind", k)))
	}
	return dst, 1, nil
}

// Name is the configured destination name.
func (d *Destination) Name() string { return d.name }

// Target is the API and a digest of the token (which names the account):
// two destinations on one account would overwrite each other's dates.
func (d *Destination) Target() (string, string) {
	sum := sha256.Sum256([]byte(d.token.Value()))
	return d.endpoint + "#" + hex.EncodeToString(sum[:8]), "Cloud Cruiser account (the same base_url and token)"
}

// Semantics is Replace: an upload overwrites its accounting date.
func (d *Destination) Semantics() workers.Semantics { return workers.Replace }

// Units returns the accounting dates the UTC hour overlaps in the zone
// offset: one, or two when the offset is not a whole number of hours and
// local midnight falls inside the hour.
func (d *Destination) Units(hour time.Time) []workers.Unit {
	h := hour.UTC().Truncate(time.Hour)
	first := d.DateUnit(h)
	last := d.DateUnit(h.Add(time.Hour - time.Nanosecond))
	if first.Key == last.Key {
		return []workers.Unit{first}
	}
	return []workers.Unit{first, last}
}

// DateUnit is the accounting date t falls on in the zone offset: key
// "d2024-08-16", from local midnight to the next, in UTC.
func (d *Destination) DateUnit(t time.Time) workers.Unit {
	y, m, day := t.In(d.loc).Date()
	start := time.Date(y, m, day, 0, 0, 0, 0, d.loc)
	return workers.Unit{Key: "d" + start.Format(time.DateOnly), Start: start.UTC(), End: start.Add(24 * time.Hour).UTC()}
}

// LeaseKey is the date itself: one uploader per date across the fleet,
// different dates in parallel (the API documents no concurrency limit).
func (d *Destination) LeaseKey(u workers.Unit) string { return u.Key }

// Deliver uploads every date of the job, each as one streamed file. A date
// the API refuses (400, 413) is emptied and its records rejected; the other
// dates go on. Any other failure ends the job with that error, and the pool
// retries it with a new rebuild (dates already reported Done stay settled).
func (d *Destination) Deliver(ctx context.Context, job workers.Job) error {
	for _, u := range job.Units() {
		err := d.uploadDate(ctx, job, u, false)
		var ref *refusedError
		if errors.As(err, &ref) {
			if err := d.refuse(ctx, job, u, ref); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		job.Done(u)
	}
	return nil
}

// refuse handles a date the API refused: it uploads an empty file for the
// date first, so that Cloud Cruiser holds none of the records about to be
// dead-lettered (an earlier upload of the date would otherwise stay), then
// rejects the date. If the emptying upload fails transiently the date is
// not rejected: the job fails and the whole date is tried again later.
func (d *Destination) refuse(ctx context.Context, job workers.Job, u workers.Unit, ref *refusedError) error {
	err := d.uploadDate(ctx, job, u, true)
	var again *refusedError
	switch {
	case errors.As(err, &again):
		job.Log().Warn("cloudcruiser: the date was refused, and so was the empty file meant to clear it; earlier data of the date may remain",
			"date", u.Key[1:], "reason", again.msg)
	case err != nil:
		return err
	}
	job.RejectUnit(u, ref.Error())
	return nil
}
