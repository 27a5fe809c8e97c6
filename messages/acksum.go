package messages

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The bounds of Ack.Reasons: a reason longer than MaxReasonBytes is clipped
// (on a UTF-8 boundary, ending in "..."), and past MaxReasons distinct
// reasons the others are counted together under one key "(N more
// reasons)", N the number of those reasons, with the sum of their counts.
// So an ack stays well under the server's max payload whatever a part's
// records were refused for, and the counts still add up to Rejected.
const (
	MaxReasonBytes = 512
	MaxReasons     = 256
)

// ClipReason bounds a reason to MaxReasonBytes.
func ClipReason(r string) string {
	if len(r) <= MaxReasonBytes {
		return r
	}
	cut := MaxReasonBytes - 3
	for cut > 0 && !utf8.RuneStart(r[cut]) {
		cut--
	}
	return r[:cut] + "..."
}

// MoreReasonsKey is the key of Ack.Reasons that counts the records of n
// reasons past MaxReasons.
func MoreReasonsKey(n int) string {
	if n == 1 {
		return "(1 more reason)"
	}
	return "(" + strconv.Itoa(n) + " more reasons)"
}

// parseMoreReasons reads a MoreReasonsKey back.
func parseMoreReasons(k string) (int, bool) {
	s, ok := strings.CutPrefix(k, "(")
	if !ok {
		return 0, false
	}
	num, rest, ok := strings.Cut(s, " ")
	if !ok || (rest != "more reasons)" && rest != "more reason)") {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	return n, err == nil && n > 0
}

// ReasonCounts counts records per rejection reason, in the order reasons
// were first met, within the bounds of Ack.Reasons (MaxReasons,
// MaxReasonBytes). The zero value is empty.
type ReasonCounts struct {
	order []string
	n     map[string]int
	more  map[uint64]bool // fnv-64 of each reason past MaxReasons
	moreN int             // their records
	moreK int             // reasons past MaxReasons merged from other counts (already anonymous)
}

// Add counts n records under reason r. n may be 0: the reason is noted
// (First) without a count.
func (c *ReasonCounts) Add(r string, n int) {
	if m, ok := parseMoreReasons(r); ok {
		c.moreK += m
		c.moreN += n
		return
	}
	r = ClipReason(r)
	if _, ok := c.n[r]; ok {
		c.n[r] += n
		return
	}
	if len(c.order) < MaxReasons {
		if c.n == nil {
			c.n = map[string]int{}
		}
		c.order = append(c.order, r)
		c.n[r] = n
		return
	}
	h := fnv.New64a()
	h.Write([]byte(r))
	if c.more == nil {
		c.more = map[uint64]bool{}
	}
	c.more[h.Sum64()] = true
	c.moreN += n
}

// AddAll adds counts o (an Ack's Reasons, say), in the order of their
// keys.
func (c *ReasonCounts) AddAll(o map[string]int) {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.Add(k, o[k])
	}
}

// Merge adds another ReasonCounts.
func (c *ReasonCounts) Merge(o *ReasonCounts) {
	for _, r := range o.order {
		c.Add(r, o.n[r])
	}
	for h := range o.more {
		if c.more == nil {
			c.more = map[uint64]bool{}
		}
		c.more[h] = true
	}
	c.moreN += o.moreN
	c.moreK += o.moreK
}

// Len is the number of distinct reasons noted.
func (c *ReasonCounts) Len() int { return len(c.order) + len(c.more) + c.moreK }

// First is the reasons kept by name, in the order they were first met.
func (c *ReasonCounts) First() []string { return c.order }

// Map is the counts as Ack.Reasons holds them (nil when none has a
// count): every reason kept by name, and the rest under MoreReasonsKey.
func (c *ReasonCounts) Map() map[string]int {
	var m map[string]int
	for _, r := range c.order {
		if n := c.n[r]; n > 0 {
			if m == nil {
				m = map[string]int{}
			}
			m[r] = n
		}
	}
	if c.moreN > 0 {
		if m == nil {
			m = map[string]int{}
		}
		m[MoreReasonsKey(len(c.more)+c.moreK)] += c.moreN
	}
	return m
}

// ReasonCount is one reason and the records refused for it.
type ReasonCount struct {
	Reason string
	Count  int
}

// Sorted lists the counted reasons, most records first (then by reason),
// with the reasons past MaxReasons last under MoreReasonsKey.
func (c *ReasonCounts) Sorted() []ReasonCount {
	var out []ReasonCount
	for _, r := range c.order {
		if n := c.n[r]; n > 0 {
			out = append(out, ReasonCount{r, n})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Reason < out[j].Reason
	})
	if c.moreN > 0 {
		out = append(out, ReasonCount{MoreReasonsKey(len(c.more) + c.moreK), c.moreN})
	}
	return out
}

// CurrencySums sums money exactly per currency (BillingCurrency; "" for
// records without one). The zero value is empty.
type CurrencySums struct {
	m map[string]*Sum
}

// Add adds d under currency cur (an unset d adds nothing).
func (c *CurrencySums) Add(cur string, d Decimal) {
	if !d.IsSet() {
		return
	}
	s := c.m[cur]
	if s == nil {
		if c.m == nil {
			c.m = map[string]*Sum{}
		}
		s = &Sum{}
		c.m[internCurrency(cur)] = s
	}
	s.Add(d)
}

// AddAll adds amounts per currency (an Ack's Costs, say).
func (c *CurrencySums) AddAll(m map[string]Decimal) {
	for cur, d := range m {
		c.Add(cur, d)
	}
}

// AddSums adds another CurrencySums.
func (c *CurrencySums) AddSums(o CurrencySums) {
	for cur, s := range o.m {
		c.Add(cur, s.Decimal())
	}
}

// Minus is c less o, currency by currency (exact).
func (c CurrencySums) Minus(o CurrencySums) CurrencySums {
	var out CurrencySums
	for cur, s := range c.m {
		v := s.Big()
		if x := o.m[cur]; x != nil {
			v = v.Sub(x.Big())
		}
		out.Add(cur, FromBig(v))
	}
	for cur, x := range o.m {
		if c.m[cur] == nil {
			out.Add(cur, FromBig(x.Big().Neg()))
		}
	}
	return out
}

// Decimals is the sums as Ack.Costs holds them (nil when empty).
func (c CurrencySums) Decimals() map[string]Decimal {
	if len(c.m) == 0 {
		return nil
	}
	out := make(map[string]Decimal, len(c.m))
	for cur, s := range c.m {
		out[cur] = s.Decimal()
	}
	return out
}

// Total is the sum over every currency: the Ack's Cost, for readers that
// predate Costs.
func (c CurrencySums) Total() Decimal {
	var t Sum
	for _, s := range c.m {
		t.AddSum(*s)
	}
	return t.Decimal()
}

// String is "12.50 USD + 3.00 EUR" (currencies sorted, "" last as a bare
// amount), "0" when empty.
func (c CurrencySums) String() string {
	if len(c.m) == 0 {
		return "0"
	}
	curs := make([]string, 0, len(c.m))
	for cur := range c.m {
		curs = append(curs, cur)
	}
	sort.Strings(curs)
	parts := make([]string, 0, len(curs))
	for _, cur := range curs {
		parts = append(parts, strings.TrimSpace(fmt.Sprint(c.m[cur].Decimal().String(), " ", cur)))
	}
	return strings.Join(parts, " + ")
}
