package messages

import "time"

// AppendDateTime appends t's wall clock, in t's location, as
// "2006-01-02T15:04:05" (no fraction, no zone), digit by digit: the row
// encoders of the billing APIs write a time per record, and the general
// formatter was a fifth of a row's cost. It reports false, and appends
// nothing, for a year outside 0000-9999.
func AppendDateTime(dst []byte, t time.Time) ([]byte, bool) {
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return dst, false
	}
	hh, mm, ss := t.Clock()
	return append(dst,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+int(mo)/10), byte('0'+int(mo)%10), '-',
		byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+hh/10), byte('0'+hh%10), ':',
		byte('0'+mm/10), byte('0'+mm%10), ':',
		byte('0'+ss/10), byte('0'+ss%10)), true
}
