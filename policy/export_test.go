package policy

import "github.com/flowaudit/flowaudit/schemas"

// RangeLookup is Matcher.Lookup on the flattened range table instead of
// bart, for BenchmarkLookup.
type RangeLookup struct {
	m *Matcher
	t *rangeTable
}

func NewRangeLookup(m *Matcher) *RangeLookup {
	return &RangeLookup{m: m, t: newRangeTable(m.lpmPrefixes, m.lpmValues, 0)}
}

func (r *RangeLookup) Lookup(a schemas.Addr) *Endpoint {
	if a == (schemas.Addr{}) {
		return &r.m.noAddr
	}
	return &r.m.endpoints[r.t.lookup(&a)]
}
