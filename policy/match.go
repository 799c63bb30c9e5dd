package policy

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/gaissmai/bart"

	"github.com/flowaudit/flowaudit/schemas"
)

// Verdict is the policy decision on one flow. Numbers are stored in
// schemas.Flow.Verdict; the string form is the ClickHouse value.
type Verdict uint8

// Verdicts.
const (
	VerdictUnknown      Verdict = 0 // could not be decided (no policy, no address)
	VerdictAllowed      Verdict = 1 // cross-segment, allowed by a rule (or by default allow)
	VerdictViolation    Verdict = 2 // cross-segment, allowed by no rule
	VerdictIntraSegment Verdict = 3 // both ends in the same segment
)

// String returns the ClickHouse value for v.
func (v Verdict) String() string {
	switch v {
	case VerdictAllowed:
		return "allowed"
	case VerdictViolation:
		return "violation"
	case VerdictIntraSegment:
		return "intra_segment"
	}
	return "unknown"
}

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

	seg int32 // index in Matcher.segments (0 is External); -1: no address
}

// FlowKey is the part of a flow Decide looks at. Src and Dst come from
// Lookup; identities are the users bound to the addresses at the flow's time
// ("" when none; the endpoints' service accounts are consulted too).
type FlowKey struct {
	Src, Dst                 *Endpoint
	SrcPort, DstPort         uint16
	Proto                    uint8
	SrcIdentity, DstIdentity string
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
}

// maxDensePairs bounds the dense segment-pair index (4 MiB of offsets).
const maxDensePairs = 1 << 20

// Compile builds the Matcher of p. p must come from Parse or Load, or be as
// valid; Compile still rejects what would make the tables ambiguous.
func Compile(p *Policy) (*Matcher, error) {
	if p == nil {
		return nil, errors.New("policy: nil policy")
	}
	m := &Matcher{policy: p, segments: []string{External}, noAddr: Endpoint{Segment: External, seg: -1}}
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
	m.endpoints = []Endpoint{{Segment: External}}
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
		ep := Endpoint{Segment: External}
		if k.seg >= 0 {
			s := &p.Segments[k.seg]
			ep.Segment, ep.Tags, ep.seg = s.Name, s.Tags, k.seg+1
		}
		if k.inv >= 0 {
			e := &p.Inventory[k.inv]
			ep.Workload, ep.Owner, ep.ServiceAccount = e.Workload, e.Owner, e.ServiceAccount
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
	pairs := make(map[uint64][]uint16)
	for ri, r := range p.Rules {
		if len(r.Ports) == 0 {
			return nil, fmt.Errorf("policy: rule %q has no ports", r.Name)
		}
		m.rules = append(m.rules, compiledRule{name: r.Name, ports: r.Ports, identities: r.Identities})
		for _, from := range r.From {
			f, ok := segIdx[from]
			if !ok {
				return nil, fmt.Errorf("policy: rule %q: unknown segment %q", r.Name, from)
			}
			for _, to := range r.To {
				t, ok := segIdx[to]
				if !ok {
					return nil, fmt.Errorf("policy: rule %q: unknown segment %q", r.Name, to)
				}
				if f == t {
					continue // intra-segment traffic never reaches the rules
				}
				k := uint64(f)*uint64(n) + uint64(t)
				if l := pairs[k]; len(l) > 0 && l[len(l)-1] == uint16(ri) {
					continue // segment listed twice
				}
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

// Decide gives the verdict on a flow and the name of the rule that allowed
// it:
//
//   - either endpoint missing or without an address: VerdictUnknown;
//   - both ends in the same segment (External included): VerdictIntraSegment;
//   - a rule allows it: from holds the source segment, to the destination
//     segment, a port spec matches DstPort/Proto, and identities is empty
//     or holds SrcIdentity or the source's service account. Rules are tried
//     in file order; the first that allows names the verdict;
//   - it is the reply of a connection a rule allows (below): allowed, with
//     that rule's name;
//   - otherwise VerdictViolation, or VerdictAllowed with rule "default"
//     under "default: allow".
//
// Replies. Exporters report each direction of a connection as its own flow,
// and a flow record does not say which side opened the connection. A flow
// is taken as a reply when the reverse direction is allowed by a rule
// (from holds the destination segment, to the source segment, identities
// match the destination's identity or service account) with SrcPort in the
// rule's port spec, and DstPort is ephemeral (>= EphemeralPortMin). For
// ICMP a reply is an echo reply (type 0, or 129 for ICMPv6, read from
// DstPort as type<<8|code the way NetFlow encodes it; a zero DstPort counts
// as a reply for ICMPv6 too since many exporters leave it empty).
// Limits: a server in the destination segment may open connections from
// its service port to ports >= 1024 of the client and pass as replies (rare:
// it needs to bind the privileged service port as source); services on
// ports >= 1024 talking to each other in both directions are
// indistinguishable from replies in the allowed direction; TCP flags are
// not consulted (a SYN without ACK from the service port is still a
// "reply").
func (m *Matcher) Decide(k *FlowKey) (Verdict, string) {
	if k == nil || k.Src == nil || k.Dst == nil || k.Src.seg < 0 || k.Dst.seg < 0 {
		return VerdictUnknown, ""
	}
	src, dst := k.Src.seg, k.Dst.seg
	if src == dst {
		return VerdictIntraSegment, ""
	}
	if int(src) >= len(m.segments) || int(dst) >= len(m.segments) {
		return VerdictUnknown, "" // an endpoint of another Matcher
	}
	for _, ri := range m.candidates(src, dst) {
		r := &m.rules[ri]
		if r.allowsIdentity(k.SrcIdentity, k.Src.ServiceAccount) && r.matches(k.DstPort, k.Proto) {
			return VerdictAllowed, r.name
		}
	}
	for _, ri := range m.candidates(dst, src) {
		r := &m.rules[ri]
		if r.allowsIdentity(k.DstIdentity, k.Dst.ServiceAccount) && r.matchesReply(k) {
			return VerdictAllowed, r.name
		}
	}
	if m.defaultAllow {
		return VerdictAllowed, DefaultRule
	}
	return VerdictViolation, ""
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
