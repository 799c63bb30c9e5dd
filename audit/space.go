package audit

import (
	"math/bits"
	"net/netip"
	"sort"

	"github.com/flowaudit/flowaudit/policy"
)

// The flow space of a policy, for the static findings of Gaps: every
// connection a rule could decide is a point (client class, server class,
// client identity, service), and a rule matches a union of at most two
// boxes — products of one set per dimension. Each dimension is cut into
// the classes the policy can tell apart, so a set is a bitset:
//
//   - endpoint classes (atoms): a segment (External included) with no
//     inventory entry, or with one inventory entry (whose labels
//     selectors read and whose service account identities match);
//   - identities: every identity a rule names, plus "any other" (none
//     included);
//   - services: elementary intervals of (protocol, port) cut at every
//     port spec's bounds, plus the protocols no spec names.
//
// Set operations over boxes are then exact interval arithmetic: a rule is
// shadowed when subtracting the earlier rules' boxes from its own leaves
// nothing. Traffic inside a segment that does not judge it by the rules
// (intra: allow) never reaches the rules: a box holding only such pairs
// is empty.

// bitset is a fixed-width set of small integers.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int) { b[i/64] |= 1 << (i % 64) }

func (b bitset) empty() bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}

func (b bitset) intersects(o bitset) bool {
	for i, w := range b {
		if w&o[i] != 0 {
			return true
		}
	}
	return false
}

func (b bitset) and(o bitset) bitset {
	out := make(bitset, len(b))
	for i, w := range b {
		out[i] = w & o[i]
	}
	return out
}

func (b bitset) andNot(o bitset) bitset {
	out := make(bitset, len(b))
	for i, w := range b {
		out[i] = w &^ o[i]
	}
	return out
}

// each calls f with every member in increasing order until f returns false.
func (b bitset) each(f func(int) bool) {
	for i, w := range b {
		for w != 0 {
			j := bits.TrailingZeros64(w)
			if !f(i*64 + j) {
				return
			}
			w &^= 1 << j
		}
	}
}

// Box dimensions.
const (
	dimSrc = iota
	dimDst
	dimID
	dimSvc
	dims
)

// box is the product of one set per dimension.
type box [dims]bitset

func (a box) intersect(b box) box {
	var out box
	for d := range a {
		out[d] = a[d].and(b[d])
	}
	return out
}

// minus returns a \ b as disjoint boxes (at most one per dimension).
func (a box) minus(b box) []box {
	for d := range a {
		if !a[d].intersects(b[d]) {
			return []box{a}
		}
	}
	var out []box
	cur := a
	for d := range a {
		if rest := cur[d].andNot(b[d]); !rest.empty() {
			piece := cur
			piece[d] = rest
			out = append(out, piece)
		}
		cur[d] = cur[d].and(b[d])
	}
	return out
}

// atom is an endpoint class: a segment (index into flowSpace.segs, 0 is
// External) and an inventory entry (-1 for none).
type atom struct {
	seg, inv int
}

// service is an elementary service interval: ports Lo..Hi of Proto, or of
// every protocol no port spec names when Other is set.
type service struct {
	Proto  uint8
	Other  bool
	Lo, Hi uint16
}

// flowSpace is the cut of one policy's flow space (see above).
type flowSpace struct {
	p          *policy.Policy
	segs       []string // 0 is External
	segIdx     map[string]int
	intraRules []bool
	atoms      []atom
	atomSA     []string
	ids        []string // identities named by rules; index len(ids) is "any other"
	idIdx      map[string]int
	svcs       []service
	rules      [][]box // per policy rule, its match set
}

// newFlowSpace cuts p's flow space and computes every rule's boxes. p must
// compile (policy.Compile).
func newFlowSpace(p *policy.Policy) *flowSpace {
	s := &flowSpace{p: p, segs: []string{policy.External}, segIdx: map[string]int{policy.External: 0},
		idIdx: map[string]int{}}
	s.intraRules = []bool{false}
	for _, sg := range p.Segments {
		s.segIdx[sg.Name] = len(s.segs)
		s.segs = append(s.segs, sg.Name)
		s.intraRules = append(s.intraRules, sg.Intra == policy.IntraRules)
	}
	s.cutAtoms()
	for _, r := range p.Rules {
		for _, id := range r.Identities {
			if _, ok := s.idIdx[id]; !ok {
				s.idIdx[id] = len(s.ids)
				s.ids = append(s.ids, id)
			}
		}
	}
	s.cutServices()
	for i := range p.Rules {
		s.rules = append(s.rules, s.ruleBoxes(&p.Rules[i]))
	}
	return s
}

// cutAtoms lists the endpoint classes: each segment alone, and each
// inventory entry in the segment holding it (longest prefix) and in every
// segment with a prefix inside it. This may list a class no address
// resolves to (a segment all of whose space is inventory), which only
// makes the static findings more conservative.
func (s *flowSpace) cutAtoms() {
	seen := map[atom]bool{}
	add := func(a atom) {
		if !seen[a] {
			seen[a] = true
			s.atoms = append(s.atoms, a)
			sa := ""
			if a.inv >= 0 {
				sa = s.p.Inventory[a.inv].ServiceAccount
			}
			s.atomSA = append(s.atomSA, sa)
		}
	}
	for i := range s.segs {
		add(atom{seg: i, inv: -1})
	}
	for ii, e := range s.p.Inventory {
		c := e.CIDR.Masked()
		best, bestBits := 0, -1
		for si, sg := range s.p.Segments {
			for _, sc := range sg.CIDRs {
				switch {
				case sc.Bits() <= c.Bits() && sc.Contains(c.Addr()) && sc.Bits() > bestBits:
					best, bestBits = si+1, sc.Bits()
				case sc.Bits() > c.Bits() && c.Contains(sc.Addr()):
					add(atom{seg: si + 1, inv: ii})
				}
			}
		}
		add(atom{seg: best, inv: ii})
	}
}

// cutServices cuts (protocol, port) at every spec's bounds.
func (s *flowSpace) cutServices() {
	bounds := map[uint8]map[int]bool{}
	named := map[uint8]bool{}
	for _, r := range s.p.Rules {
		for _, ps := range r.Ports {
			if ps.Proto != policy.ProtoAny {
				named[ps.Proto] = true
			}
		}
	}
	protos := []uint8{policy.ProtoAny} // ProtoAny stands for "every other protocol"
	for p := range named {
		protos = append(protos, p)
	}
	sort.Slice(protos, func(i, j int) bool { return protos[i] < protos[j] })
	for _, p := range protos {
		bounds[p] = map[int]bool{0: true, 65536: true}
	}
	for _, r := range s.p.Rules {
		for _, ps := range r.Ports {
			for _, p := range protos {
				if ps.Proto == policy.ProtoAny || ps.Proto == p {
					bounds[p][int(ps.Lo)] = true
					bounds[p][int(ps.Hi)+1] = true
				}
			}
		}
	}
	for _, p := range protos {
		var b []int
		for v := range bounds[p] {
			b = append(b, v)
		}
		sort.Ints(b)
		for i := 0; i+1 < len(b); i++ {
			s.svcs = append(s.svcs, service{Proto: p, Other: p == policy.ProtoAny, Lo: uint16(b[i]), Hi: uint16(b[i+1] - 1)})
		}
	}
}

func (s *flowSpace) specCovers(ps policy.PortSpec, v service) bool {
	return (ps.Proto == policy.ProtoAny || (!v.Other && ps.Proto == v.Proto)) && ps.Lo <= v.Lo && v.Hi <= ps.Hi
}

// endAtoms is the set of atoms an end of a rule (segment names and
// selectors) matches, as policy.Matcher does.
func (s *flowSpace) endAtoms(names []string, sels []policy.Selector) bitset {
	out := newBitset(len(s.atoms))
	segs := map[int]bool{}
	for _, n := range names {
		segs[s.segIdx[n]] = true
	}
	for ai, a := range s.atoms {
		if segs[a.seg] {
			out.set(ai)
			continue
		}
		for _, sel := range sels {
			si := -1
			if sel.Segment != "" {
				si = s.segIdx[sel.Segment]
			}
			if si >= 0 && si != a.seg {
				continue
			}
			if len(sel.Labels) == 0 || (a.inv >= 0 && labelsMatch(s.p.Inventory[a.inv].Labels, sel.Labels)) {
				out.set(ai)
				break
			}
		}
	}
	return out
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ruleBoxes is r's match set: one box without identities; with them, the
// clients whose service account is listed (any user) and the others (the
// listed users only).
func (s *flowSpace) ruleBoxes(r *policy.Rule) []box {
	src := s.endAtoms(r.From, r.FromSelectors)
	dst := s.endAtoms(r.To, r.ToSelectors)
	svc := newBitset(len(s.svcs))
	for vi, v := range s.svcs {
		for _, ps := range r.Ports {
			if s.specCovers(ps, v) {
				svc.set(vi)
				break
			}
		}
	}
	allIDs := newBitset(len(s.ids) + 1)
	for i := 0; i <= len(s.ids); i++ {
		allIDs.set(i)
	}
	var out []box
	if len(r.Identities) == 0 {
		out = []box{{src, dst, allIDs, svc}}
	} else {
		listed := map[string]bool{}
		ids := newBitset(len(s.ids) + 1)
		for _, id := range r.Identities {
			listed[id] = true
			ids.set(s.idIdx[id])
		}
		bySA, others := newBitset(len(s.atoms)), newBitset(len(s.atoms))
		src.each(func(ai int) bool {
			if sa := s.atomSA[ai]; sa != "" && listed[sa] {
				bySA.set(ai)
			} else {
				others.set(ai)
			}
			return true
		})
		out = []box{{bySA, dst, allIDs, svc}, {others, dst, ids, svc}}
	}
	var kept []box
	for _, b := range out {
		if s.nonEmpty(b) {
			kept = append(kept, b)
		}
	}
	return kept
}

// nonEmpty reports whether b holds a connection the rules decide: every
// dimension non-empty and a pair of ends in different segments, or in one
// segment with intra: rules.
func (s *flowSpace) nonEmpty(b box) bool {
	for d := range b {
		if b[d].empty() {
			return false
		}
	}
	seg := -1
	mixed := false
	for _, d := range []int{dimSrc, dimDst} {
		b[d].each(func(ai int) bool {
			sg := s.atoms[ai].seg
			if seg < 0 {
				seg = sg
			} else if sg != seg {
				mixed = true
				return false
			}
			return true
		})
		if mixed {
			return true
		}
	}
	return s.intraRules[seg]
}

// maxBoxes bounds the pieces a subtraction may leave; past it the
// question is left undecided (no finding), never guessed.
const maxBoxes = 4096

// subtract returns set \ b, dropping pieces the rules never see; ok is
// false when the result grew past maxBoxes.
func (s *flowSpace) subtract(set []box, b []box) ([]box, bool) {
	for _, rb := range b {
		var next []box
		for _, a := range set {
			for _, piece := range a.minus(rb) {
				if s.nonEmpty(piece) {
					next = append(next, piece)
				}
			}
		}
		if len(next) > maxBoxes {
			return nil, false
		}
		set = next
	}
	return set, true
}

// overlaps reports whether some connection of set is in b.
func (s *flowSpace) overlaps(set []box, b []box) bool {
	for _, a := range set {
		for _, rb := range b {
			if s.nonEmpty(a.intersect(rb)) {
				return true
			}
		}
	}
	return false
}

// coverage is what the static analysis says about one rule.
type coverage struct {
	shadowed  bool
	coveredBy []int // earlier rules deciding some of its connections
	redundant bool
	takenOver []int // later rules deciding its connections alike without it
	byDefault bool  // ... and the default, for the rest
	undecided bool
}

// analyse classifies every rule against the rules before it in its
// evaluation order: the enforced rules for an enforced rule, every rule
// for a staged one (staged rules only decide the staged verdict).
func (s *flowSpace) analyse() []coverage {
	out := make([]coverage, len(s.p.Rules))
	var enforced, all []int
	for i := range s.p.Rules {
		all = append(all, i)
		if !s.p.Rules[i].Staged() {
			enforced = append(enforced, i)
		}
	}
	defaultDeny := s.p.Default != policy.DefaultAllow
	run := func(seq []int, staged bool) {
		for pos, i := range seq {
			if s.p.Rules[i].Staged() != staged {
				continue
			}
			c := &out[i]
			rem := s.rules[i]
			if len(rem) == 0 {
				// Matches nothing the rules decide (intra-segment ends only).
				c.shadowed, c.undecided = false, true
				continue
			}
			ok := true
			for _, j := range seq[:pos] {
				if !s.overlaps(rem, s.rules[j]) {
					continue
				}
				c.coveredBy = append(c.coveredBy, j)
				if rem, ok = s.subtract(rem, s.rules[j]); !ok || len(rem) == 0 {
					break
				}
			}
			if !ok {
				c.undecided = true
				continue
			}
			if len(rem) == 0 {
				c.shadowed = true
				continue
			}
			deny := s.p.Rules[i].Deny()
			redundant := true
			for _, j := range seq[pos+1:] {
				if !s.overlaps(rem, s.rules[j]) {
					continue
				}
				if s.p.Rules[j].Deny() != deny {
					redundant = false
					break
				}
				c.takenOver = append(c.takenOver, j)
				if rem, ok = s.subtract(rem, s.rules[j]); !ok {
					redundant = false
					c.undecided = true
					break
				}
				if len(rem) == 0 {
					break
				}
			}
			if redundant && len(rem) > 0 {
				c.byDefault = true
				redundant = deny == defaultDeny
			}
			c.redundant = redundant
		}
	}
	run(enforced, false)
	run(all, true)
	return out
}

// segPairs lists the (from segment, to segment) pairs a rule's boxes
// hold, in segment order, intra pairs only where the rules judge them.
func (s *flowSpace) segPairs(i int) [][2]string {
	seen := map[[2]int]bool{}
	for _, b := range s.rules[i] {
		srcSegs, dstSegs := map[int]bool{}, map[int]bool{}
		b[dimSrc].each(func(ai int) bool { srcSegs[s.atoms[ai].seg] = true; return true })
		b[dimDst].each(func(ai int) bool { dstSegs[s.atoms[ai].seg] = true; return true })
		for f := range srcSegs {
			for t := range dstSegs {
				if f != t || s.intraRules[f] {
					seen[[2]int{f, t}] = true
				}
			}
		}
	}
	keys := make([][2]int, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if keys[a][0] != keys[b][0] {
			return keys[a][0] < keys[b][0]
		}
		return keys[a][1] < keys[b][1]
	})
	out := make([][2]string, len(keys))
	for i, k := range keys {
		out[i] = [2]string{s.segs[k[0]], s.segs[k[1]]}
	}
	return out
}

// private address space that belongs in some segment: RFC 1918, shared
// address space (RFC 6598) and IPv6 unique local addresses.
var privatePrefixes = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("fc00::/7"),
}

func isPrivate(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range privatePrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
