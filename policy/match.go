package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/gaissmai/bart"

	"github.com/flowaudit/flowaudit/schemas"
)

// Verdict is the policy decision on one flow: the one type of
// schemas.Verdict (stored in schemas.Flow.Verdict; its String is the
// ClickHouse value), named here for the policy's readers.
type Verdict = schemas.Verdict

// Verdicts.
const (
	VerdictUnknown      = schemas.VerdictUnknown      // could not be decided (no policy, no address)
	VerdictAllowed      = schemas.VerdictAllowed      // cross-segment, allowed by a rule (or by default allow)
	VerdictViolation    = schemas.VerdictViolation    // cross-segment, allowed by no rule
	VerdictIntraSegment = schemas.VerdictIntraSegment // both ends in the same segment
)

// DefaultRule is the rule name of flows allowed by "default: allow".
const DefaultRule = "default"

// EphemeralPortMin is the lowest port the reply heuristic accepts as a
// client's ephemeral port (see Matcher.Decide).
const EphemeralPortMin = 1024

// Endpoint is what the policy says about one address. Endpoints live in the
// Matcher's compiled tables: Lookup returns pointers into them without
// allocating, and callers must not modify them (Tags included).
type Endpoint struct {
	Segment        string   // declared segment, or External
	Tags           []string // the segment's tags
	Workload       string   // from the longest inventory prefix; "" when none
	Owner          string
	ServiceAccount string
	Labels         map[string]string // the inventory entry's labels; nil when none

	seg int32 // index in Matcher.segments (0 is External); -1: no address
	inv int32 // index in Policy.Inventory; -1: none
}

// FlowKey is the part of a flow Decide looks at. Src and Dst come from
// Lookup; identities are the users bound to the addresses at the flow's time
// ("" when none; the endpoints' service accounts are consulted too).
type FlowKey struct {
	Src, Dst                 *Endpoint
	SrcPort, DstPort         uint16
	Proto                    uint8
	SrcIdentity, DstIdentity string
	// ServiceSide is DecideServiceSide's answer for the flow (the zero
	// value, unknown, falls back to the reply heuristic of Decide).
	ServiceSide schemas.ServiceSide
	// SrcLabels and DstLabels are the labels of the workload bound to each
	// address at the flow's time (a Kubernetes pod's, from the identity
	// bindings): "key=value" pairs, comma-separated, "" when none. A label
	// selector matches an end whose inventory entry or bound workload
	// carries every label it names.
	SrcLabels, DstLabels string
}

// Matcher is a compiled Policy. It is read-only once built and safe for
// concurrent use; hot reload builds a new Matcher and swaps the pointer.
type Matcher struct {
	policy       *Policy
	segments     []string // index 0 is External
	endpoints    []Endpoint
	noAddr       Endpoint
	lpm          *bartTable
	lpmPrefixes  []netip.Prefix // the union, for tests and benchmarks
	lpmValues    []uint32
	rules        []compiledRule
	defaultAllow bool
	hasStaged    bool
	intraRules   []bool // per segment index: intra: rules

	// Candidate rules per (src segment, dst segment), in file order:
	// pairRules[pairStart[i]:pairStart[i+1]] for i = src*len(segments)+dst.
	// pairMap replaces the dense index for very many segments.
	pairStart []uint32
	pairRules []uint16
	pairMap   map[uint64][]uint16
}

type compiledRule struct {
	name       string
	ports      []PortSpec
	identities []string
	deny       bool
	staged     bool
	// With labelled selectors, candidates (by segment pair) are checked
	// end by end: from/to hold the segment names' indexes as a bitset
	// and the selectors.
	selectors        bool
	fromSegs, toSegs []uint64
	fromSel, toSel   []compiledSelector
}

// compiledSelector is a Selector: seg is the segment index (-1 for any)
// and inv the bitset of inventory entries carrying every label.
type compiledSelector struct {
	seg  int32
	inv  []uint64
	want []string // "key=value", for a bound workload's labels
}

// maxDensePairs bounds the dense segment-pair index (4 MiB of offsets).
const maxDensePairs = 1 << 20

// Compile builds the Matcher of p. p must come from Parse or Load, or be as
// valid; Compile still rejects what would make the tables ambiguous.
func Compile(p *Policy) (*Matcher, error) {
	if p == nil {
		return nil, errors.New("policy: nil policy")
	}
	m := &Matcher{policy: p, segments: []string{External}, noAddr: Endpoint{Segment: External, seg: -1, inv: -1}}
	switch p.Default {
	case DefaultDeny, "":
	case DefaultAllow:
		m.defaultAllow = true
	default:
		return nil, fmt.Errorf("policy: default %q is not deny or allow", p.Default)
	}
	if len(p.Rules) > 1<<16 {
		return nil, fmt.Errorf("policy: %d rules, at most %d supported", len(p.Rules), 1<<16)
	}
	segIdx := map[string]int32{External: 0}
	var segTable, invTable bart.Table[int32]
	for i, s := range p.Segments {
		if _, dup := segIdx[s.Name]; dup || s.Name == "" {
			return nil, fmt.Errorf("policy: segment %q declared twice, empty or reserved", s.Name)
		}
		segIdx[s.Name] = int32(len(m.segments))
		m.segments = append(m.segments, s.Name)
		switch s.Intra {
		case "", IntraAllow, IntraRules:
		default:
			return nil, fmt.Errorf("policy: segment %q: intra %q is not allow or rules", s.Name, s.Intra)
		}
		for _, c := range s.CIDRs {
			if !c.IsValid() {
				return nil, fmt.Errorf("policy: segment %q: invalid CIDR", s.Name)
			}
			if _, dup := segTable.Get(c.Masked()); dup {
				return nil, fmt.Errorf("policy: %s is in two segments", c)
			}
			segTable.Insert(c, int32(i))
		}
	}
	for i, e := range p.Inventory {
		if !e.CIDR.IsValid() {
			return nil, fmt.Errorf("policy: inventory entry %d: invalid CIDR", i)
		}
		invTable.Insert(e.CIDR, int32(i))
	}

	// One endpoint per distinct (segment, inventory entry) pair a prefix of
	// the union can resolve to; endpoint 0 is External with no inventory.
	type pairKey struct{ seg, inv int32 }
	epIdx := map[pairKey]uint32{{-1, -1}: 0}
	m.endpoints = []Endpoint{{Segment: External, inv: -1}}
	endpointOf := func(pfx netip.Prefix) uint32 {
		k := pairKey{-1, -1}
		if v, ok := segTable.LookupPrefix(pfx); ok {
			k.seg = v
		}
		if v, ok := invTable.LookupPrefix(pfx); ok {
			k.inv = v
		}
		if i, ok := epIdx[k]; ok {
			return i
		}
		ep := Endpoint{Segment: External, inv: k.inv}
		if k.seg >= 0 {
			s := &p.Segments[k.seg]
			ep.Segment, ep.Tags, ep.seg = s.Name, s.Tags, k.seg+1
		}
		if k.inv >= 0 {
			e := &p.Inventory[k.inv]
			ep.Workload, ep.Owner, ep.ServiceAccount, ep.Labels = e.Workload, e.Owner, e.ServiceAccount, e.Labels
		}
		i := uint32(len(m.endpoints))
		epIdx[k] = i
		m.endpoints = append(m.endpoints, ep)
		return i
	}
	seen := map[netip.Prefix]bool{}
	var pfxs []netip.Prefix
	var vals []uint32
	add := func(c netip.Prefix) {
		c = c.Masked()
		if seen[c] {
			return
		}
		seen[c] = true
		pfxs = append(pfxs, c)
		vals = append(vals, endpointOf(c))
	}
	for _, s := range p.Segments {
		for _, c := range s.CIDRs {
			add(c)
		}
	}
	for _, e := range p.Inventory {
		add(e.CIDR)
	}
	m.lpm = newBartTable(pfxs, vals, 0)
	m.lpmPrefixes, m.lpmValues = pfxs, vals

	// Rules and the segment-pair index.
	n := len(m.segments)
	m.intraRules = make([]bool, n)
	for i, sg := range p.Segments {
		m.intraRules[i+1] = sg.Intra == IntraRules
	}
	words := (n + 63) / 64
	invWords := (len(p.Inventory) + 63) / 64
	pairs := make(map[uint64][]uint16)
	for ri, r := range p.Rules {
		if len(r.Ports) == 0 {
			return nil, fmt.Errorf("policy: rule %q has no ports", r.Name)
		}
		switch r.Action {
		case "", ActionAllow, ActionDeny:
		default:
			return nil, fmt.Errorf("policy: rule %q: action %q is not allow or deny", r.Name, r.Action)
		}
		switch r.Mode {
		case "", ModeEnforced, ModeStaged:
		default:
			return nil, fmt.Errorf("policy: rule %q: mode %q is not enforced or staged", r.Name, r.Mode)
		}
		cr := compiledRule{name: r.Name, ports: r.Ports, identities: r.Identities, deny: r.Deny(), staged: r.Staged(),
			fromSegs: make([]uint64, words), toSegs: make([]uint64, words)}
		m.hasStaged = m.hasStaged || cr.staged
		// ends gives the segments an end list can match (for the index)
		// and fills the rule's bitset and selectors.
		ends := func(names []string, sels []Selector, bitset []uint64, out *[]compiledSelector) ([]int32, error) {
			var segs []int32
			seen := make(map[int32]bool)
			addSeg := func(i int32) {
				if !seen[i] {
					seen[i] = true
					segs = append(segs, i)
				}
			}
			for _, name := range names {
				i, ok := segIdx[name]
				if !ok {
					return nil, fmt.Errorf("policy: rule %q: unknown segment %q", r.Name, name)
				}
				bitset[i/64] |= 1 << (i % 64)
				addSeg(i)
			}
			for _, sel := range sels {
				si := int32(-1)
				if sel.Segment != "" {
					i, ok := segIdx[sel.Segment]
					if !ok {
						return nil, fmt.Errorf("policy: rule %q: unknown segment %q", r.Name, sel.Segment)
					}
					si = i
				}
				if len(sel.Labels) == 0 {
					if si < 0 {
						return nil, fmt.Errorf("policy: rule %q: a selector needs a segment or labels", r.Name)
					}
					bitset[si/64] |= 1 << (si % 64)
					addSeg(si)
					continue
				}
				cs := compiledSelector{seg: si, inv: make([]uint64, invWords)}
				for k, v := range sel.Labels {
					cs.want = append(cs.want, k+"="+v)
				}
				sort.Strings(cs.want)
				for ii, e := range p.Inventory {
					if hasLabels(e.Labels, sel.Labels) {
						cs.inv[ii/64] |= 1 << (ii % 64)
					}
				}
				*out = append(*out, cs)
				cr.selectors = true
				if si >= 0 {
					addSeg(si)
				} else {
					for i := range int32(n) {
						addSeg(i)
					}
				}
			}
			return segs, nil
		}
		froms, err := ends(r.From, r.FromSelectors, cr.fromSegs, &cr.fromSel)
		if err != nil {
			return nil, err
		}
		tos, err := ends(r.To, r.ToSelectors, cr.toSegs, &cr.toSel)
		if err != nil {
			return nil, err
		}
		m.rules = append(m.rules, cr)
		for _, f := range froms {
			for _, t := range tos {
				if f == t && !m.intraRules[f] {
					continue // intra-segment traffic of this segment never reaches the rules
				}
				k := uint64(f)*uint64(n) + uint64(t)
				pairs[k] = append(pairs[k], uint16(ri))
			}
		}
	}
	if n*n <= maxDensePairs {
		m.pairStart = make([]uint32, n*n+1)
		for i := 0; i < n*n; i++ {
			m.pairStart[i] = uint32(len(m.pairRules))
			m.pairRules = append(m.pairRules, pairs[uint64(i)]...)
		}
		m.pairStart[n*n] = uint32(len(m.pairRules))
	} else {
		m.pairMap = pairs
	}
	return m, nil
}

// Policy returns the policy m was compiled from. It must not be modified.
func (m *Matcher) Policy() *Policy { return m.policy }

// Lookup labels a: segment (and tags) of the longest segment prefix holding
// a, workload, owner and service account of the longest inventory prefix
// holding a. Never nil: an address in no segment has Segment External, and
// the zero Addr (no address) gets an External endpoint on which Decide
// returns VerdictUnknown.
func (m *Matcher) Lookup(a schemas.Addr) *Endpoint {
	if a == (schemas.Addr{}) {
		return &m.noAddr
	}
	return &m.endpoints[m.lpm.lookup(&a)]
}

func (m *Matcher) candidates(src, dst int32) []uint16 {
	n := int32(len(m.segments))
	i := src*n + dst
	if m.pairStart != nil {
		return m.pairRules[m.pairStart[i]:m.pairStart[i+1]]
	}
	return m.pairMap[uint64(i)]
}

// Decide gives the verdict on a flow and the name of the rule that
// decided it, with the enforced rules only (staged rules are skipped):
//
//   - either endpoint missing or without an address: VerdictUnknown;
//   - both ends in the same segment (External included), unless the
//     segment has intra: rules: VerdictIntraSegment;
//   - otherwise the rules are tried in file order and the first that
//     matches decides: VerdictAllowed for an allow rule, VerdictViolation
//     (with the rule's name) for a deny rule. A rule matches when an end
//     of from holds the source (a segment name: its segment; a selector:
//     its segment, or any, and the labels of the address's inventory
//     entry), an end of to holds the destination, a port spec matches
//     the service port and protocol, and identities is empty or holds
//     the client's identity or service account;
//   - no rule matches: VerdictViolation, or VerdictAllowed with rule
//     "default" under "default: allow".
//
// Which end is the client comes from k.ServiceSide:
//
//   - ServiceDst: the flow goes client to server; the rules are matched
//     with the source as client and DstPort as the service.
//   - ServiceSrc: the flow is a reply; the connection it answers
//     (destination to source on SrcPort, the destination's identity) is
//     matched first, then, if no rule matches it, the flow as it is.
//   - ServiceUnknown: the flow as it is, then the reply heuristic below.
//
// The reply heuristic (for flows whose service side is unknown, and for
// callers that do not set it): a flow is taken as a reply when a rule
// matches the reverse direction (from holds the destination, to the
// source, identities match the destination's identity or service account)
// with SrcPort in the rule's port spec and DstPort ephemeral (>=
// EphemeralPortMin). For ICMP a reply is an echo reply (type 0, or 129
// for ICMPv6, read from DstPort as type<<8|code the way NetFlow encodes
// it; a zero DstPort counts as a reply for ICMPv6 too since many exporters
// leave it empty).
//
// An allow-only policy means the same in any rule order: the first
// matching rule allows, as any would.
func (m *Matcher) Decide(k *FlowKey) (Verdict, string) {
	return m.decide(k, false)
}

// DecideStaged is Decide with the staged rules enforced too: the verdict
// the flow would get once they are. Without staged rules it equals Decide.
func (m *Matcher) DecideStaged(k *FlowKey) (Verdict, string) {
	return m.decide(k, true)
}

// HasStaged reports whether the policy has staged rules (otherwise
// DecideStaged always equals Decide).
func (m *Matcher) HasStaged() bool { return m.hasStaged }

func (m *Matcher) decide(k *FlowKey, staged bool) (Verdict, string) {
	if k == nil || k.Src == nil || k.Dst == nil || k.Src.seg < 0 || k.Dst.seg < 0 {
		return VerdictUnknown, ""
	}
	src, dst := k.Src.seg, k.Dst.seg
	if int(src) >= len(m.segments) || int(dst) >= len(m.segments) {
		return VerdictUnknown, "" // an endpoint of another Matcher
	}
	if src == dst && !m.intraRules[src] {
		return VerdictIntraSegment, ""
	}
	if k.ServiceSide == schemas.ServiceSrc {
		if v, rule, ok := m.first(k.Dst, k.Src, k.DstLabels, k.SrcLabels, k.SrcPort, k.Proto, k.DstIdentity, staged, nil); ok {
			return v, rule
		}
	}
	if v, rule, ok := m.first(k.Src, k.Dst, k.SrcLabels, k.DstLabels, k.DstPort, k.Proto, k.SrcIdentity, staged, nil); ok {
		return v, rule
	}
	if k.ServiceSide == schemas.ServiceUnknown {
		if v, rule, ok := m.first(k.Dst, k.Src, k.DstLabels, k.SrcLabels, 0, k.Proto, k.DstIdentity, staged, k); ok {
			return v, rule
		}
	}
	if m.defaultAllow {
		return VerdictAllowed, DefaultRule
	}
	return VerdictViolation, ""
}

// first finds the first rule (in file order) that matches traffic from
// client to server on port/proto with the client's identity, skipping
// staged rules unless staged. With reply set, the port test is the reply
// heuristic's (matchesReply) on that flow.
func (m *Matcher) first(client, server *Endpoint, clientLabels, serverLabels string, port uint16, proto uint8, identity string, staged bool, reply *FlowKey) (Verdict, string, bool) {
	for _, ri := range m.candidates(client.seg, server.seg) {
		r := &m.rules[ri]
		if r.staged && !staged {
			continue
		}
		if r.selectors && !(endMatches(client, clientLabels, r.fromSegs, r.fromSel) && endMatches(server, serverLabels, r.toSegs, r.toSel)) {
			continue
		}
		if !r.allowsIdentity(identity, client.ServiceAccount) {
			continue
		}
		if reply != nil {
			if !r.matchesReply(reply) {
				continue
			}
		} else if !r.matches(port, proto) {
			continue
		}
		if r.deny {
			return VerdictViolation, r.name, true
		}
		return VerdictAllowed, r.name, true
	}
	return VerdictUnknown, "", false
}

func endMatches(e *Endpoint, labels string, segs []uint64, sels []compiledSelector) bool {
	if segs[e.seg/64]&(1<<(e.seg%64)) != 0 {
		return true
	}
	for i := range sels {
		s := &sels[i]
		if s.seg >= 0 && s.seg != e.seg {
			continue
		}
		if e.inv >= 0 && s.inv[e.inv/64]&(1<<(e.inv%64)) != 0 || labels != "" && carriesLabels(labels, s.want) {
			return true
		}
	}
	return false
}

// carriesLabels reports whether labels ("k=v" pairs, comma-separated)
// holds every pair of want. It does not allocate.
func carriesLabels(labels string, want []string) bool {
	for _, w := range want {
		found := false
		for rest := labels; rest != "" && !found; {
			pair, tail, _ := strings.Cut(rest, ",")
			found, rest = pair == w, tail
		}
		if !found {
			return false
		}
	}
	return true
}

// hasLabels reports whether have carries every label of want.
func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (r *compiledRule) matches(port uint16, proto uint8) bool {
	for _, p := range r.ports {
		if p.Matches(port, proto) {
			return true
		}
	}
	return false
}

func (r *compiledRule) matchesReply(k *FlowKey) bool {
	switch k.Proto {
	case ProtoICMP, ProtoICMPv6:
		if k.Proto == ProtoICMP && k.DstPort>>8 != 0 {
			return false
		}
		if k.Proto == ProtoICMPv6 && k.DstPort>>8 != 129 && k.DstPort != 0 {
			return false
		}
		for _, p := range r.ports {
			if p.Proto == ProtoAny || p.Proto == k.Proto {
				return true
			}
		}
		return false
	}
	return k.DstPort >= EphemeralPortMin && r.matches(k.SrcPort, k.Proto)
}

func (r *compiledRule) allowsIdentity(user, serviceAccount string) bool {
	if len(r.identities) == 0 {
		return true
	}
	for _, id := range r.identities {
		if (user != "" && id == user) || (serviceAccount != "" && id == serviceAccount) {
			return true
		}
	}
	return false
}
