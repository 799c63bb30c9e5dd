package audit

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

// Connection changes of a PolicyDiff.
const (
	Added   = "added"   // denied (a violation) before, allowed after
	Removed = "removed" // allowed before, denied after
)

// AnyIdentity is the identity of a change that holds whoever the client
// is; OtherIdentity stands for every identity neither policy names.
const (
	AnyIdentity   = "*"
	OtherIdentity = "(other)"
)

// PolicyDiff is the semantic difference between two policies: the
// connections (client end × server end × port range × protocol × client
// identity) one policy allows and the other does not. Rule order, names,
// metadata and formatting do not matter, only decisions do.
type PolicyDiff struct {
	Summary DiffSummary `json:"summary"`
	// Changes are decided by the enforced rules of each policy, Staged by
	// enforced and staged rules together (present when either policy has
	// staged rules). Both sorted by change (added first), source segment,
	// source workload, destination segment, destination workload,
	// protocol, first port, identity.
	Changes []DiffChange `json:"changes"`
	Staged  []DiffChange `json:"staged_changes,omitempty"`
}

// DiffSummary counts the changes of a PolicyDiff.
type DiffSummary struct {
	Added         int `json:"added"`
	Removed       int `json:"removed"`
	StagedAdded   int `json:"staged_added"`
	StagedRemoved int `json:"staged_removed"`
}

// DiffChange is one connection opened (Added) or closed (Removed). Its
// ends are named in the terms of the policy that allows it (the new one
// for Added, the old one for Removed): a whole segment when the workload
// and CIDRs are empty, an inventory workload, or the listed part of a
// segment whose addresses changed hands.
type DiffChange struct {
	Change       string   `json:"change"`
	SrcSegment   string   `json:"src_segment"`
	SrcWorkload  string   `json:"src_workload,omitempty"`
	SrcCIDRs     []string `json:"src_cidrs,omitempty"`
	DstSegment   string   `json:"dst_segment"`
	DstWorkload  string   `json:"dst_workload,omitempty"`
	DstCIDRs     []string `json:"dst_cidrs,omitempty"`
	DstSensitive bool     `json:"dst_sensitive"`
	// Ports is the range in the policy's written form ("5432/tcp",
	// "8000-8100/tcp", "udp", "any"); Proto the protocol's name.
	Ports    string `json:"ports"`
	Proto    string `json:"proto"`
	PortLo   uint16 `json:"port_lo"`
	PortHi   uint16 `json:"port_hi"`
	Identity string `json:"identity"`
	// Before and After are verdicts (allowed, violation, intra_segment);
	// the rules are those that decided them ("" for no rule).
	Before      string   `json:"before"`
	After       string   `json:"after"`
	BeforeRules []string `json:"before_rules"`
	AfterRules  []string `json:"after_rules"`
}

// Sensitive reports whether a segment with tags holds sensitive data
// (tagged sensitive or pci-cde).
func Sensitive(tags []string) bool {
	return slices.Contains(tags, "sensitive") || slices.Contains(tags, "pci-cde")
}

// diffAtom is a set of addresses that both policies label the same way
// throughout: the same segment and inventory entry in each.
type diffAtom struct {
	old, new *policy.Endpoint
	cidrs    []string // the prefixes whose own addresses form the atom
}

// diffCell is one decision cell: atoms, protocol, port range, identity.
type diffCell struct {
	src, dst int
	proto    int // index in protos
	port     int // index in the protocol's ranges
	ident    int // index in idents
}

type diffOutcome struct {
	change                string
	before, after         policy.Verdict
	beforeRule, afterRule string
}

// DiffPolicies compares old and new: it partitions the address space into
// atoms both policies label uniformly (from the union of their segment and
// inventory prefixes), the ports into the ranges every port spec of either
// policy bounds, the protocols into those named plus "other", and the
// client identities into those either policy names plus the rest; then it
// decides every cell with each policy's Matcher, the enricher's code, and
// reports the cells whose openness changed, merged back into whole
// segments, identity-independent changes and contiguous port ranges.
func DiffPolicies(old, new *policy.Policy) (*PolicyDiff, error) {
	om, err := policy.Compile(old)
	if err != nil {
		return nil, fmt.Errorf("old policy: %w", err)
	}
	nm, err := policy.Compile(new)
	if err != nil {
		return nil, fmt.Errorf("new policy: %w", err)
	}
	atoms := diffAtoms(om, nm)
	protos, ranges := diffPorts(old, new)
	idents := diffIdentities(old, new)
	d := &PolicyDiff{Changes: []DiffChange{}}
	d.Changes = diffRun(om, nm, atoms, protos, ranges, idents, false)
	if om.HasStaged() || nm.HasStaged() {
		d.Staged = diffRun(om, nm, atoms, protos, ranges, idents, true)
	}
	for _, c := range d.Changes {
		if c.Change == Added {
			d.Summary.Added++
		} else {
			d.Summary.Removed++
		}
	}
	for _, c := range d.Staged {
		if c.Change == Added {
			d.Summary.StagedAdded++
		} else {
			d.Summary.StagedRemoved++
		}
	}
	return d, nil
}

// diffAtoms finds one representative address for the own part of every
// prefix of either policy (the prefix minus its more specific prefixes)
// and of the two roots (addresses in no prefix), and groups them by how
// both policies label them.
func diffAtoms(om, nm *policy.Matcher) []diffAtom {
	seen := map[netip.Prefix]bool{}
	var pfxs []netip.Prefix
	add := func(c netip.Prefix) {
		c = c.Masked()
		if !seen[c] {
			seen[c] = true
			pfxs = append(pfxs, c)
		}
	}
	add(netip.MustParsePrefix("0.0.0.0/0"))
	add(netip.MustParsePrefix("::/0"))
	for _, p := range []*policy.Policy{om.Policy(), nm.Policy()} {
		for _, s := range p.Segments {
			for _, c := range s.CIDRs {
				add(c)
			}
		}
		for _, e := range p.Inventory {
			add(e.CIDR)
		}
	}
	sort.Slice(pfxs, func(i, j int) bool {
		if c := pfxs[i].Addr().Compare(pfxs[j].Addr()); c != 0 {
			return c < 0
		}
		return pfxs[i].Bits() < pfxs[j].Bits()
	})
	// Endpoints that differ only by the inventory entry behind them (one
	// workload declared for its IPv4 and IPv6 prefixes) decide alike.
	type key struct{ old, new string }
	index := map[key]int{}
	var atoms []diffAtom
	for i, p := range pfxs {
		rep, ok := ownAddr(p, pfxs[i+1:])
		if !ok {
			continue
		}
		a := schemas.AddrFromNetip(rep)
		oe, ne := om.Lookup(a), nm.Lookup(a)
		k := key{endpointKey(oe), endpointKey(ne)}
		j, ok := index[k]
		if !ok {
			j = len(atoms)
			index[k] = j
			atoms = append(atoms, diffAtom{old: oe, new: ne})
		}
		if p.Bits() > 0 {
			atoms[j].cidrs = append(atoms[j].cidrs, p.String())
		}
	}
	return atoms
}

// endpointKey is what Decide reads of an endpoint: its segment, the
// labels selectors match and the service account identities match.
func endpointKey(e *policy.Endpoint) string {
	labels := make([]string, 0, len(e.Labels))
	for k, v := range e.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	return strings.Join([]string{e.Segment, e.Workload, e.ServiceAccount, strings.Join(labels, ",")}, "\x00")
}

// ownAddr returns an address of p in none of the more specific prefixes
// among later (sorted by address, then length, all after p): the first
// such address, skipping the all-zero IPv6 address (no address at all).
func ownAddr(p netip.Prefix, later []netip.Prefix) (netip.Addr, bool) {
	a := p.Addr()
	if a.Is6() && a.IsUnspecified() {
		a = a.Next()
	}
	for _, c := range later {
		if !p.Contains(c.Addr()) {
			break // sorted by address: past the end of p
		}
		switch {
		case c.Addr().Compare(a) > 0:
			return a, true // every later prefix starts after a
		case c.Contains(a):
			a = lastAddr(c).Next()
			if !a.IsValid() || !p.Contains(a) {
				return netip.Addr{}, false
			}
		}
	}
	return a, true
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// diffProto is a protocol cell: a number to decide with and a name.
type diffProto struct {
	num  uint8
	name string
}

// diffPorts returns the protocols the two policies name (then "other",
// a number neither names) and, per protocol, the port ranges every port
// spec that applies to it bounds.
func diffPorts(policies ...*policy.Policy) ([]diffProto, [][][2]uint16) {
	named := map[uint8]bool{}
	var specs []policy.PortSpec
	for _, p := range policies {
		for _, r := range p.Rules {
			for _, s := range r.Ports {
				specs = append(specs, s)
				if s.Proto != policy.ProtoAny {
					named[s.Proto] = true
				}
			}
		}
	}
	var protos []diffProto
	for n := 1; n < 256; n++ {
		if named[uint8(n)] {
			protos = append(protos, diffProto{uint8(n), protoName(uint8(n))})
		}
	}
	for n := 1; n < 256; n++ {
		if !named[uint8(n)] {
			protos = append(protos, diffProto{uint8(n), "other"})
			break
		}
	}
	ranges := make([][][2]uint16, len(protos))
	for i, pr := range protos {
		bounds := map[int]bool{0: true, 65536: true}
		for _, s := range specs {
			if s.Proto == policy.ProtoAny || s.Proto == pr.num {
				bounds[int(s.Lo)] = true
				bounds[int(s.Hi)+1] = true
			}
		}
		bs := make([]int, 0, len(bounds))
		for b := range bounds {
			bs = append(bs, b)
		}
		sort.Ints(bs)
		for j := 0; j+1 < len(bs); j++ {
			ranges[i] = append(ranges[i], [2]uint16{uint16(bs[j]), uint16(bs[j+1] - 1)})
		}
	}
	return protos, ranges
}

func protoName(n uint8) string {
	switch n {
	case policy.ProtoTCP:
		return "tcp"
	case policy.ProtoUDP:
		return "udp"
	case policy.ProtoICMP:
		return "icmp"
	case policy.ProtoICMPv6:
		return "icmpv6"
	}
	return fmt.Sprint(n)
}

// diffIdentities returns the identities the rules name, sorted, then ""
// (any identity neither names).
func diffIdentities(policies ...*policy.Policy) []string {
	seen := map[string]bool{}
	for _, p := range policies {
		for _, r := range p.Rules {
			for _, id := range r.Identities {
				seen[id] = true
			}
		}
	}
	delete(seen, "")
	return append(sortedKeys(seen), "")
}

func open(v policy.Verdict) bool {
	return v == policy.VerdictAllowed || v == policy.VerdictIntraSegment
}

func diffRun(om, nm *policy.Matcher, atoms []diffAtom, protos []diffProto, ranges [][][2]uint16, idents []string, staged bool) []DiffChange {
	return diffCollapse(atoms, protos, ranges, idents, diffCells(om, nm, atoms, protos, ranges, idents, staged))
}

// diffCells decides every cell of the grid whose decision differs
// between the two policies.
func diffCells(om, nm *policy.Matcher, atoms []diffAtom, protos []diffProto, ranges [][][2]uint16, idents []string, staged bool) map[diffCell]diffOutcome {
	decide := func(m *policy.Matcher, src, dst *policy.Endpoint, port uint16, proto uint8, id string) (policy.Verdict, string) {
		k := policy.FlowKey{Src: src, Dst: dst, DstPort: port, SrcPort: 40000, Proto: proto, SrcIdentity: id, ServiceSide: schemas.ServiceDst}
		if staged {
			return m.DecideStaged(&k)
		}
		return m.Decide(&k)
	}
	oldIdx, newIdx := newRuleIndex(om.Policy()), newRuleIndex(nm.Policy())
	protoIdx := map[uint8]int{}
	for i, pr := range protos {
		protoIdx[pr.num] = i
	}
	cells := map[diffCell]diffOutcome{}
	for si := range atoms {
		for di := range atoms {
			// Only the rules that can match this pair of ends in either
			// policy bound its ports, protocols and identities: the
			// pair is decided on that coarser grid, and changed cells
			// are spread back onto the global one.
			rules := append(oldIdx.candidates(atoms[si].old, atoms[di].old), newIdx.candidates(atoms[si].new, atoms[di].new)...)
			lp := &policy.Policy{Rules: rules}
			lprotos, lranges := diffPorts(lp)
			lidents := diffIdentities(lp)
			lnamed := map[uint8]bool{}
			for _, pr := range lprotos {
				if pr.name != "other" {
					lnamed[pr.num] = true
				}
			}
			for lpi, pr := range lprotos {
				// The global protocols this local one stands for.
				var gps []int
				if pr.name != "other" {
					gps = []int{protoIdx[pr.num]}
				} else {
					for gi, g := range protos {
						if !lnamed[g.num] {
							gps = append(gps, gi)
						}
					}
				}
				for _, rg := range lranges[lpi] {
					local := map[string]diffOutcome{}
					for _, id := range lidents {
						bv, br := decide(om, atoms[si].old, atoms[di].old, rg[0], pr.num, id)
						av, ar := decide(nm, atoms[si].new, atoms[di].new, rg[0], pr.num, id)
						if open(bv) == open(av) {
							continue
						}
						o := diffOutcome{change: Added, before: bv, after: av, beforeRule: br, afterRule: ar}
						if open(bv) {
							o.change = Removed
						}
						local[id] = o
					}
					if len(local) == 0 {
						continue
					}
					for ii, id := range idents {
						lid := id
						if _, named := local[id]; !named && !slices.Contains(lidents, id) {
							lid = "" // an identity no relevant rule names decides as any other
						}
						o, changed := local[lid]
						if !changed {
							continue
						}
						for _, gpi := range gps {
							for ri, g := range ranges[gpi] {
								if g[0] >= rg[0] && g[1] <= rg[1] {
									cells[diffCell{si, di, gpi, ri, ii}] = o
								}
							}
						}
					}
				}
			}
		}
	}
	return cells
}

// ruleIndex finds the rules of a policy that can match a pair of ends.
type ruleIndex struct {
	rules []policy.Rule
	pairs map[[2]string][]int // by (from segment, to segment); "" for any segment
}

func newRuleIndex(p *policy.Policy) *ruleIndex {
	ix := &ruleIndex{rules: p.Rules, pairs: map[[2]string][]int{}}
	for i, r := range p.Rules {
		froms, tos := ruleSegments(r.From, r.FromSelectors), ruleSegments(r.To, r.ToSelectors)
		seen := map[[2]string]bool{}
		for _, f := range froms {
			for _, t := range tos {
				k := [2]string{f, t}
				if !seen[k] {
					seen[k] = true
					ix.pairs[k] = append(ix.pairs[k], i)
				}
			}
		}
	}
	return ix
}

func ruleSegments(names []string, sels []policy.Selector) []string {
	out := append([]string(nil), names...)
	for _, s := range sels {
		out = append(out, s.Segment) // "" = any segment
	}
	return out
}

// candidates returns the rules whose ends can hold src and dst, in file
// order (selectors checked against the endpoints' labels).
func (ix *ruleIndex) candidates(src, dst *policy.Endpoint) []policy.Rule {
	var idx []int
	for _, k := range [][2]string{{src.Segment, dst.Segment}, {"", dst.Segment}, {src.Segment, ""}, {"", ""}} {
		idx = append(idx, ix.pairs[k]...)
	}
	sort.Ints(idx)
	var out []policy.Rule
	for j, i := range idx {
		if j > 0 && idx[j-1] == i {
			continue
		}
		r := &ix.rules[i]
		if endHolds(r.From, r.FromSelectors, src) && endHolds(r.To, r.ToSelectors, dst) {
			out = append(out, *r)
		}
	}
	return out
}

func endHolds(names []string, sels []policy.Selector, e *policy.Endpoint) bool {
	if slices.Contains(names, e.Segment) {
		return true
	}
	for _, s := range sels {
		if s.Segment != "" && s.Segment != e.Segment {
			continue
		}
		ok := true
		for k, v := range s.Labels {
			if got, has := e.Labels[k]; !has || got != v {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// diffRef is one end of a change: an atom of a segment, or the whole
// segment (atom -1).
type diffRef struct {
	seg  string
	atom int
}

// diffEntry is a change of one port range while ends collapse.
type diffEntry struct {
	src, dst      diffRef
	proto, port   int
	ident, change string
	before, after policy.Verdict
	br, ar        map[string]bool
}

// collapseEnd merges the entries that differ only by the atom of one end
// (the destination when dst) into one entry for the whole segment when
// they cover every atom of it (atoms gives the count per change and
// segment).
func collapseEnd(in []diffEntry, dst bool, atoms func(change, seg string) int) []diffEntry {
	type key struct {
		other         diffRef
		seg           string
		proto, port   int
		ident, change string
		before, after policy.Verdict
	}
	groups := map[key][]int{}
	var order []key
	for i, e := range in {
		k := key{other: e.dst, seg: e.src.seg, proto: e.proto, port: e.port, ident: e.ident, change: e.change, before: e.before, after: e.after}
		if dst {
			k.other, k.seg = e.src, e.dst.seg
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	out := make([]diffEntry, 0, len(in))
	for _, k := range order {
		idx := groups[k]
		if len(idx) < atoms(k.change, k.seg) {
			for _, i := range idx {
				out = append(out, in[i])
			}
			continue
		}
		m := in[idx[0]]
		m.br, m.ar = map[string]bool{}, map[string]bool{}
		if dst {
			m.dst = diffRef{k.seg, -1}
		} else {
			m.src = diffRef{k.seg, -1}
		}
		for _, i := range idx {
			for n := range in[i].br {
				m.br[n] = true
			}
			for n := range in[i].ar {
				m.ar[n] = true
			}
		}
		out = append(out, m)
	}
	return out
}

type diffEnd struct {
	segment, workload string
	cidrs             string // joined, for grouping
	sensitive         bool
}

func diffCollapse(atoms []diffAtom, protos []diffProto, ranges [][][2]uint16, idents []string, cells map[diffCell]diffOutcome) []DiffChange {
	if len(cells) == 0 {
		return []DiffChange{}
	}
	view := func(a *diffAtom, change string) *policy.Endpoint {
		if change == Added {
			return a.new
		}
		return a.old
	}
	// Atoms per segment, in each policy's view.
	segAtoms := map[string]map[string][]int{Added: {}, Removed: {}}
	for i := range atoms {
		for _, ch := range []string{Added, Removed} {
			s := view(&atoms[i], ch).Segment
			segAtoms[ch][s] = append(segAtoms[ch][s], i)
		}
	}
	end := func(r diffRef, change string) diffEnd {
		if r.atom < 0 {
			e := diffEnd{segment: r.seg}
			for _, i := range segAtoms[change][r.seg] {
				e.sensitive = Sensitive(view(&atoms[i], change).Tags)
			}
			return e
		}
		ep := view(&atoms[r.atom], change)
		return diffEnd{segment: ep.Segment, sensitive: Sensitive(ep.Tags), workload: ep.Workload,
			cidrs: strings.Join(atoms[r.atom].cidrs, ",")}
	}
	// Cells grouped by everything but the identity; then by everything
	// but the atoms within their segments.
	type sdKey struct {
		src, dst, proto, port int
	}
	type outKey struct {
		change        string
		before, after policy.Verdict
	}
	bySD := map[sdKey][]diffCell{}
	for c := range cells {
		k := sdKey{c.src, c.dst, c.proto, c.port}
		bySD[k] = append(bySD[k], c)
	}
	// identity-level entries: (src atom, dst atom, proto, port, ident label, outcome)
	type idEntry struct {
		sd    sdKey
		ident string
		out   outKey
		rules [2]map[string]bool
	}
	var entries []idEntry
	for k, cs := range bySD {
		first := cells[cs[0]]
		same := len(cs) == len(idents)
		for _, c := range cs {
			o := cells[c]
			if o.change != first.change || o.before != first.before || o.after != first.after {
				same = false
			}
		}
		if same {
			e := idEntry{sd: k, ident: AnyIdentity, out: outKey{first.change, first.before, first.after}, rules: [2]map[string]bool{{}, {}}}
			for _, c := range cs {
				e.rules[0][cells[c].beforeRule] = true
				e.rules[1][cells[c].afterRule] = true
			}
			entries = append(entries, e)
			continue
		}
		for _, c := range cs {
			o := cells[c]
			id := idents[c.ident]
			if id == "" {
				id = OtherIdentity
			}
			entries = append(entries, idEntry{sd: k, ident: id, out: outKey{o.change, o.before, o.after},
				rules: [2]map[string]bool{{o.beforeRule: true}, {o.afterRule: true}}})
		}
	}
	// Ends collapse into whole segments: first the destination, then the
	// source, when a change holds for every atom of the segment.
	rows := make([]diffEntry, 0, len(entries))
	for _, e := range entries {
		rows = append(rows, diffEntry{
			src:   diffRef{view(&atoms[e.sd.src], e.out.change).Segment, e.sd.src},
			dst:   diffRef{view(&atoms[e.sd.dst], e.out.change).Segment, e.sd.dst},
			proto: e.sd.proto, port: e.sd.port, ident: e.ident, change: e.out.change,
			before: e.out.before, after: e.out.after, br: e.rules[0], ar: e.rules[1]})
	}
	for _, dst := range []bool{true, false} {
		rows = collapseEnd(rows, dst, func(change, seg string) int { return len(segAtoms[change][seg]) })
	}
	// Merge contiguous port ranges of otherwise equal rows.
	type mergeKey struct {
		change, ident           string
		before, after           policy.Verdict
		src, dst                diffEnd
		proto                   int
		beforeRules, afterRules string
	}
	byMerge := map[mergeKey][]int{} // port range indexes
	for _, r := range rows {
		mk := mergeKey{change: r.change, ident: r.ident, before: r.before, after: r.after,
			src: end(r.src, r.change), dst: end(r.dst, r.change), proto: r.proto,
			beforeRules: joinSet(r.br), afterRules: joinSet(r.ar)}
		byMerge[mk] = append(byMerge[mk], r.port)
	}
	var out []DiffChange
	for mk, ports := range byMerge {
		sort.Ints(ports)
		for i := 0; i < len(ports); {
			j := i
			for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
				j++
			}
			lo, hi := ranges[mk.proto][ports[i]][0], ranges[mk.proto][ports[j]][1]
			pr := protos[mk.proto]
			c := DiffChange{Change: mk.change,
				SrcSegment: mk.src.segment, SrcWorkload: mk.src.workload, SrcCIDRs: splitNonEmpty(mk.src.cidrs),
				DstSegment: mk.dst.segment, DstWorkload: mk.dst.workload, DstCIDRs: splitNonEmpty(mk.dst.cidrs),
				DstSensitive: mk.dst.sensitive,
				Proto:        pr.name, PortLo: lo, PortHi: hi, Identity: mk.ident,
				Before: mk.before.String(), After: mk.after.String(),
				BeforeRules: splitRules(mk.beforeRules), AfterRules: splitRules(mk.afterRules)}
			c.Ports = policy.PortSpec{Lo: lo, Hi: hi, Proto: pr.num}.String()
			if pr.name == "other" {
				c.Ports = "other"
				if lo != 0 || hi != 65535 {
					c.Ports = fmt.Sprintf("%d-%d/other", lo, hi)
				}
			}
			out = append(out, c)
			i = j + 1
		}
	}
	out = mergeAnyProto(out, protos)
	sort.Slice(out, func(i, j int) bool { return diffLess(&out[i], &out[j]) })
	return out
}

// mergeAnyProto folds changes that hold for every port of every protocol
// into one change of ports "any".
func mergeAnyProto(in []DiffChange, protos []diffProto) []DiffChange {
	key := func(c DiffChange) string {
		return strings.Join([]string{c.Change, c.SrcSegment, c.SrcWorkload, strings.Join(c.SrcCIDRs, ","),
			c.DstSegment, c.DstWorkload, strings.Join(c.DstCIDRs, ","), c.Identity, c.Before, c.After,
			strings.Join(c.BeforeRules, ","), strings.Join(c.AfterRules, ",")}, "\x00")
	}
	full := map[string]int{}
	for _, c := range in {
		if c.PortLo == 0 && c.PortHi == 65535 {
			full[key(c)]++
		}
	}
	var out []DiffChange
	done := map[string]bool{}
	for _, c := range in {
		k := key(c)
		if c.PortLo == 0 && c.PortHi == 65535 && full[k] == len(protos) {
			if done[k] {
				continue
			}
			done[k] = true
			c.Proto, c.Ports = "any", "any"
		}
		out = append(out, c)
	}
	return out
}

func diffLess(a, b *DiffChange) bool {
	if a.Change != b.Change {
		return a.Change == Added
	}
	for _, p := range [][2]string{{a.SrcSegment, b.SrcSegment}, {a.SrcWorkload, b.SrcWorkload},
		{strings.Join(a.SrcCIDRs, ","), strings.Join(b.SrcCIDRs, ",")},
		{a.DstSegment, b.DstSegment}, {a.DstWorkload, b.DstWorkload},
		{strings.Join(a.DstCIDRs, ","), strings.Join(b.DstCIDRs, ",")}, {a.Proto, b.Proto}} {
		if p[0] != p[1] {
			return p[0] < p[1]
		}
	}
	if a.PortLo != b.PortLo {
		return a.PortLo < b.PortLo
	}
	return a.Identity < b.Identity
}

func joinSet(m map[string]bool) string { return strings.Join(sortedKeys(m), "\x00") }

func splitRules(s string) []string {
	out := strings.Split(s, "\x00")
	for i, r := range out {
		if r == "" {
			out[i] = "-"
		}
	}
	return out
}

func splitNonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// WriteDiffTable writes d as a summary line and a table per kind of
// decision (enforced, then staged when present).
func WriteDiffTable(w io.Writer, d *PolicyDiff) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Connections: %d added, %d removed\n", d.Summary.Added, d.Summary.Removed)
	writeDiffRows(tw, d.Changes)
	if d.Staged != nil {
		fmt.Fprintf(tw, "\nWith staged rules enforced: %d added, %d removed\n", d.Summary.StagedAdded, d.Summary.StagedRemoved)
		writeDiffRows(tw, d.Staged)
	}
	return tw.Flush()
}

func writeDiffRows(tw *tabwriter.Writer, cs []DiffChange) {
	if len(cs) == 0 {
		return
	}
	fmt.Fprintln(tw, "CHANGE\tFROM\tTO\tPORTS\tIDENTITY\tBEFORE\tAFTER")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Change,
			DiffEndName(c.SrcSegment, c.SrcWorkload, c.SrcCIDRs), DiffEndName(c.DstSegment, c.DstWorkload, c.DstCIDRs),
			c.Ports, c.Identity, verdictRules(c.Before, c.BeforeRules), verdictRules(c.After, c.AfterRules))
	}
}

// DiffEndName writes an end of a change: "db", "db/orders-db",
// "app[10.3.9.0/24]".
func DiffEndName(segment, workload string, cidrs []string) string {
	s := segment
	if workload != "" {
		s += "/" + workload
	} else if len(cidrs) > 0 {
		s += "[" + strings.Join(cidrs, ",") + "]"
	}
	return s
}

func verdictRules(v string, rules []string) string {
	r := strings.Join(rules, ",")
	if r == "-" || r == "" {
		return v
	}
	return v + " (" + r + ")"
}
