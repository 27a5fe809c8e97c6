package workers

import (
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// Append parts for a destination that writes its rows from the part
// (a RowEncoder that is a PartRowEncoder: the webhook's JSON) are decoded
// and encoded in the worker slot that delivers them, once, before the
// first try: each record without its maps (PartReader), its row straight
// from the part. enqueueAppend only admits them, so decoding runs on
// every slot rather than on the one goroutine that reads the stream. A
// record needed whole (a rejected one, a refused part's, a destination
// asking for Records) is decoded whole again from the part's payload.

// appendEncoding is how the slots encode p's append parts, and whether
// they do (ok false: enqueueAppend decodes them whole, as for any other
// destination).
func (p *Pool) appendEncoding() (enc partEncoding, ok bool) {
	re, ok := p.dest.(RowEncoder)
	if !ok {
		return enc, false
	}
	pe, ok := re.(PartRowEncoder)
	if !ok {
		return enc, false
	}
	return partEncoding{row: rowEncoding(re), part: pe}, true
}

// encodeAppend decodes and encodes pm's part (pm.raw): its records and
// rows then stand in pm.enc and pm.part. An error is decodeInto's: the
// part cannot be read, and is dead.
func (pm *pendingMsg) encodeAppend(enc partEncoding) error {
	b := encodedParts.Get().(*encodedPart)
	b.seq, b.h, b.data, b.meta, b.err = pm.seq, pm.raw.Headers(), pm.raw.Data(), pm.meta, nil
	b.unit = Unit{Start: pm.meta.Hour, End: pm.meta.Hour.Add(time.Hour)}
	pr := partReaders.Get().(*messages.PartReader)
	skinny := b.encodePart(enc, pr)
	pr.Release()
	partReaders.Put(pr)
	if !skinny {
		b.encode(enc.row)
	}
	b.h, b.data = nil, nil
	if b.err != nil {
		err := b.err
		b.recs, b.err = b.recs[:0], nil
		encodedParts.Put(b)
		return err
	}
	pm.enc, pm.skinny = b, skinny
	pm.part = &messages.Part{Meta: pm.meta, Records: b.recs}
	return nil
}

// wholeRecords are pm's records with their maps: the ones it holds when
// they were decoded whole, else decoded again from its payload (once).
func (pm *pendingMsg) wholeRecords() ([]messages.UsageRecord, error) {
	if !pm.skinny {
		return pm.part.Records, nil
	}
	if pm.whole == nil {
		recs, err := decodeInto(nil, pm.raw.Headers(), pm.raw.Data(), pm.meta)
		if err != nil {
			return nil, err // cannot happen: the part was read once
		}
		pm.whole = recs
	}
	return pm.whole, nil
}

// wholeRecord is record i of pm with its maps: r itself when pm's records
// are whole (or, which cannot happen, the part no longer decodes).
func (pm *pendingMsg) wholeRecord(i int, r *messages.UsageRecord) *messages.UsageRecord {
	whole, err := pm.wholeRecords()
	if err != nil || i >= len(whole) {
		return r
	}
	return &whole[i]
}

// releaseEncoded hands pm's encoded part back for another, once it is
// settled; as releaseRecords, not when a dead letter holds its records.
func (pm *pendingMsg) releaseEncoded(rejected int) {
	if pm.enc == nil || rejected > 0 {
		return
	}
	b := pm.enc
	b.recs = b.recs[:0] // their maps stay, for reuse
	encodedParts.Put(b)
	pm.enc, pm.part, pm.raw, pm.whole = nil, nil, nil, nil
}
