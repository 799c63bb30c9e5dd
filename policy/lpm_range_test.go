package policy

import (
	"encoding/binary"
	"net/netip"
	"sort"

	"github.com/flowaudit/flowaudit/schemas"
)

// The hand-written longest-prefix-match alternative measured against bart
// (see lpm.go): the union of prefixes flattened into sorted disjoint
// ranges.

// u128 is an address as a 128-bit big-endian number.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool {
	return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo)
}

// next returns a+1, and false when a is the largest address.
func (a u128) next() (u128, bool) {
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, true
	}
	return a, false
}

func u128From16(b [16]byte) u128 {
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// prefixRange gives the first and last address of p, IPv4 as mapped IPv6.
func prefixRange(p netip.Prefix) (first, last u128) {
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	first = u128From16(p.Masked().Addr().As16())
	last = first
	host := 128 - bits
	switch {
	case host >= 64:
		last.hi |= (uint64(1) << (host - 64)) - 1
		if host == 128 {
			last.hi = ^uint64(0)
		}
		last.lo = ^uint64(0)
	case host > 0:
		last.lo |= (uint64(1) << host) - 1
	}
	return first, last
}

type span struct {
	first, last u128
	bits        int
	val         uint32
}

// flatten turns nested-or-disjoint spans into sorted disjoint ranges:
// starts[i] begins a range that runs to starts[i+1]-1 with value vals[i].
// Addresses no span covers get dflt. starts[0] is always 0.
func flatten(spans []span, dflt uint32) (starts []u128, vals []uint32) {
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].first != spans[j].first {
			return spans[i].first.less(spans[j].first)
		}
		return spans[i].bits < spans[j].bits
	})
	starts, vals = []u128{{}}, []uint32{dflt}
	emit := func(at u128, v uint32) {
		n := len(starts)
		if starts[n-1] == at {
			vals[n-1] = v
			if n >= 2 && vals[n-2] == v {
				starts, vals = starts[:n-1], vals[:n-1]
			}
			return
		}
		if vals[n-1] == v {
			return
		}
		starts, vals = append(starts, at), append(vals, v)
	}
	var stack []span
	pop := func(until u128, all bool) {
		for len(stack) > 0 && (all || stack[len(stack)-1].last.less(until)) {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			after, ok := top.last.next()
			if !ok {
				continue
			}
			v := dflt
			if len(stack) > 0 {
				v = stack[len(stack)-1].val
			}
			emit(after, v)
		}
	}
	for _, s := range spans {
		pop(s.first, false)
		emit(s.first, s.val)
		stack = append(stack, s)
	}
	pop(u128{}, true)
	return starts, vals
}

// rangeTable is the flattened longest-prefix-match table.
type rangeTable struct {
	dflt uint32
	// IPv4: dir4[h] is the index of the first range starting at or after
	// h<<16; starts4[0] == 0.
	dir4    []uint32
	starts4 []uint32
	vals4   []uint32
	starts6 []u128
	vals6   []uint32
}

// v4Base is ::ffff:0.0.0.0, where IPv4 starts in mapped form.
var v4Base = u128{0, 0xffff_0000_0000}

func newRangeTable(pfxs []netip.Prefix, vals []uint32, dflt uint32) *rangeTable {
	var s4, s6 []span
	for i, p := range pfxs {
		first, last := prefixRange(p)
		sp := span{first: first, last: last, bits: p.Bits(), val: vals[i]}
		if p.Addr().Is4() {
			s4 = append(s4, sp)
		} else {
			s6 = append(s6, sp)
		}
	}
	t := &rangeTable{dflt: dflt}
	t.starts6, t.vals6 = flatten(s6, dflt)

	st, vs := flatten(s4, dflt)
	// Keep the ranges inside ::ffff:0:0/96, as 32-bit starts.
	t.starts4, t.vals4 = []uint32{0}, []uint32{dflt}
	for i, s := range st {
		if s.hi != 0 || s.lo>>32 > 0xffff {
			break // past the IPv4 range
		}
		if s.less(v4Base) {
			t.vals4[0] = vs[i]
			continue
		}
		v := uint32(s.lo)
		if v == 0 {
			t.vals4[0] = vs[i]
			continue
		}
		t.starts4 = append(t.starts4, v)
		t.vals4 = append(t.vals4, vs[i])
	}
	t.dir4 = make([]uint32, 1<<16+1)
	j := 0
	for h := 0; h <= 1<<16; h++ {
		for j < len(t.starts4) && uint64(t.starts4[j]) < uint64(h)<<16 {
			j++
		}
		t.dir4[h] = uint32(j)
	}
	return t
}

func (t *rangeTable) lookup(a *schemas.Addr) uint32 {
	if a.Is4() {
		return t.lookup4(binary.BigEndian.Uint32(a[12:]))
	}
	return t.lookup6(u128{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])})
}

func (t *rangeTable) lookup4(v uint32) uint32 {
	h := v >> 16
	lo, hi := t.dir4[h], t.dir4[h+1]
	// The answer is the last range starting at or before v: in [lo, hi),
	// or lo-1 when no range starts inside this /16 at or before v.
	starts := t.starts4
	for lo < hi {
		mid := (lo + hi) >> 1
		if starts[mid] <= v {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return t.vals4[lo-1]
}

func (t *rangeTable) lookup6(a u128) uint32 {
	starts := t.starts6
	lo, hi := 0, len(starts)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		s := starts[mid]
		if s.hi < a.hi || (s.hi == a.hi && s.lo <= a.lo) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return t.vals6[lo-1]
}
