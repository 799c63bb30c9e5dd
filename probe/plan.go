package probe

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

// Expectation is what the policy says about one attempt.
type Expectation string

// Expectations (the probe_results.expected values).
const (
	ExpectAllow Expectation = "allow"
	ExpectDeny  Expectation = "deny"
)

// AttackerTCPPorts are the TCP ports scanners and lateral movement try
// first (remote shells and desktops, file sharing, databases, caches,
// search and container APIs). Every target is probed on them.
var AttackerTCPPorts = []uint16{21, 22, 23, 25, 80, 135, 139, 443, 445, 1433, 1521, 2375, 3306, 3389,
	5432, 5900, 5985, 6379, 8080, 9200, 11211, 27017}

// AttackerUDPPorts are the UDP ports probed on every target: services
// that answer a well-formed request (DNS, NTP), so an open port shows.
var AttackerUDPPorts = []uint16{53, 123}

// Source is where a run probes from: the prober's segment (possibly
// policy.External) and the local address attempts are bound to (invalid:
// the kernel's choice).
type Source struct {
	Segment string
	Addr    netip.Addr
}

// Check is one planned attempt: a target address and port, and what the
// policy expects of it.
type Check struct {
	SrcSegment  string
	SrcAddr     netip.Addr // bound local address; invalid = kernel's choice
	DstAddr     netip.Addr
	DstSegment  string
	DstWorkload string
	DstPort     uint16 // 0 for ICMP echo
	Proto       uint8  // policy.ProtoTCP, ProtoUDP, ProtoICMP or ProtoICMPv6
	Expected    Expectation
	Rule        string // the rule that allows it; "" when denied (or "default")
	Sensitive   bool   // the destination segment is tagged sensitive or pci-cde
}

// PlanOptions bound a plan.
type PlanOptions struct {
	TargetsPerSegment int  // addresses per destination segment
	DeniedSample      int  // pseudo-random denied TCP ports per target
	ICMP              bool // one echo request per target
}

// Plan is the ordered list of checks of one run, and what was left out.
type Plan struct {
	Checks []Check
	// IdentityOnly counts (target, port) pairs left out because only a
	// rule restricted to identities allows them: a network probe carries
	// no user, and a firewall does not see one, so neither outcome would
	// prove anything.
	IdentityOnly int
}

// BuildPlan computes the checks a prober at src runs: for every declared
// segment other than its own, up to TargetsPerSegment addresses
// (inventory workloads first, then the first hosts of the segment's
// CIDRs), each on every port a rule names, the attacker ports, a sample
// of denied ports and ICMP echo. Targets are only ever addresses of
// declared segments: never External, never the prober's own segment
// (intra-segment traffic does not cross the boundary a segmentation test
// proves). The expectation of each check is the matcher's Decide on a
// new connection from src (the destination serves).
//
// Checks are sorted by destination segment, address, protocol and port.
func BuildPlan(m *policy.Matcher, src Source, opts PlanOptions) (Plan, error) {
	p := m.Policy()
	if src.Segment != policy.External && !slices.ContainsFunc(p.Segments, func(s policy.Segment) bool { return s.Name == src.Segment }) {
		return Plan{}, fmt.Errorf("segment %q is not declared in the policy (segments: %s)", src.Segment, segmentNames(p))
	}
	srcEp := sourceEndpoint(m, src)
	ports := candidatePorts(p)
	var plan Plan
	for _, seg := range p.Segments {
		if seg.Name == src.Segment {
			continue
		}
		for _, t := range targets(m, seg, src.Addr, opts.TargetsPerSegment) {
			dstEp := m.Lookup(schemas.AddrFromNetip(t.addr))
			seen := map[[2]int]bool{}
			add := func(port uint16, proto uint8) bool {
				k := [2]int{int(port), int(proto)}
				if seen[k] {
					return false
				}
				seen[k] = true
				exp, rule, ok := expect(m, srcEp, dstEp, port, proto)
				if !ok {
					plan.IdentityOnly++
					return false
				}
				plan.Checks = append(plan.Checks, Check{
					SrcSegment: src.Segment, SrcAddr: src.Addr, DstAddr: t.addr, DstSegment: seg.Name,
					DstWorkload: t.workload, DstPort: port, Proto: proto, Expected: exp, Rule: rule,
					Sensitive: sensitive(seg.Tags),
				})
				return exp == ExpectDeny
			}
			for _, pp := range ports {
				add(pp.port, pp.proto)
			}
			// Denied sample: deterministic per (source segment, target).
			h := fnv.New64a()
			h.Write([]byte(src.Segment))
			h.Write(t.addr.AsSlice())
			rng := rand.New(rand.NewPCG(h.Sum64(), 0x9e3779b97f4a7c15))
			for n, tries := 0, 0; n < opts.DeniedSample && tries < 50*opts.DeniedSample; tries++ {
				port := uint16(1024 + rng.IntN(65536-1024))
				if seen[[2]int{int(port), int(policy.ProtoTCP)}] {
					continue
				}
				if exp, _, ok := expect(m, srcEp, dstEp, port, policy.ProtoTCP); !ok || exp != ExpectDeny {
					continue
				}
				add(port, policy.ProtoTCP)
				n++
			}
			if opts.ICMP {
				proto := policy.ProtoICMP
				if t.addr.Is6() {
					proto = policy.ProtoICMPv6
				}
				add(0, proto)
			}
		}
	}
	slices.SortStableFunc(plan.Checks, func(a, b Check) int {
		return cmp.Or(cmp.Compare(a.DstSegment, b.DstSegment), a.DstAddr.Compare(b.DstAddr),
			cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.DstPort, b.DstPort))
	})
	return plan, nil
}

func segmentNames(p *policy.Policy) string {
	var names []string
	for _, s := range p.Segments {
		names = append(names, s.Name)
	}
	names = append(names, policy.External)
	return fmt.Sprint(names)
}

// sourceEndpoint is the policy's view of the prober: its own address when
// bound (so its workload's service account counts), else any address of
// its segment.
func sourceEndpoint(m *policy.Matcher, src Source) *policy.Endpoint {
	if src.Addr.IsValid() {
		return m.Lookup(schemas.AddrFromNetip(src.Addr))
	}
	for _, s := range m.Policy().Segments {
		if s.Name == src.Segment && len(s.CIDRs) > 0 {
			return m.Lookup(schemas.AddrFromNetip(s.CIDRs[0].Addr()))
		}
	}
	// External: an address no segment holds. 0.0.0.1 is in no declared
	// segment unless a policy declares 0.0.0.0/8 or /0, which then is not
	// External anyway.
	return m.Lookup(schemas.AddrFromNetip(netip.AddrFrom4([4]byte{0, 0, 0, 1})))
}

type portProto struct {
	port  uint16
	proto uint8
}

// candidatePorts are the ports every target is probed on: the attacker
// ports and both ends of every TCP/UDP port range any rule names (a port
// allowed between two other segments is the likeliest hole between
// these), sorted.
func candidatePorts(p *policy.Policy) []portProto {
	set := map[portProto]bool{}
	for _, port := range AttackerTCPPorts {
		set[portProto{port, policy.ProtoTCP}] = true
	}
	for _, port := range AttackerUDPPorts {
		set[portProto{port, policy.ProtoUDP}] = true
	}
	for _, r := range p.Rules {
		for _, ps := range r.Ports {
			var protos []uint8
			switch ps.Proto {
			case policy.ProtoTCP, policy.ProtoUDP:
				protos = []uint8{ps.Proto}
			case policy.ProtoAny:
				protos = []uint8{policy.ProtoTCP, policy.ProtoUDP}
			default:
				continue // ICMP: one echo per target covers it
			}
			if ps.Lo == 0 && ps.Hi == 65535 {
				continue // a whole protocol: the attacker ports sample it
			}
			for _, proto := range protos {
				for _, port := range []uint16{ps.Lo, ps.Hi} {
					if port != 0 {
						set[portProto{port, proto}] = true
					}
				}
			}
		}
	}
	out := make([]portProto, 0, len(set))
	for pp := range set {
		out = append(out, pp)
	}
	slices.SortFunc(out, func(a, b portProto) int { return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port)) })
	return out
}

// ICMP echo request types, as Decide reads them from DstPort (type<<8|code).
const (
	icmpEchoRequest   = 8
	icmpv6EchoRequest = 128
)

// expect is the policy's expectation for a new connection; ok is false
// when only an identity-restricted rule would allow it.
func expect(m *policy.Matcher, src, dst *policy.Endpoint, port uint16, proto uint8) (Expectation, string, bool) {
	// The prober is the client: ServiceDst keeps Decide from taking the
	// attempt for the reply of a connection the other way round, which a
	// stateful firewall would refuse as a new connection.
	k := policy.FlowKey{Src: src, Dst: dst, DstPort: port, Proto: proto, ServiceSide: schemas.ServiceDst}
	switch proto {
	case policy.ProtoICMP:
		k.DstPort = icmpEchoRequest << 8
	case policy.ProtoICMPv6:
		k.DstPort = icmpv6EchoRequest << 8
	}
	v, rule := m.Decide(&k)
	if v == policy.VerdictAllowed {
		return ExpectAllow, rule, true
	}
	if identityRuleCovers(m.Policy(), src.Segment, dst.Segment, k.DstPort, proto) {
		return "", "", false
	}
	return ExpectDeny, "", true
}

// covers reports whether r's from side can hold segment src, its to side
// segment dst, and a port spec (port, proto). A selector counts for its
// segment (or any, without one): Decide has already matched the labels.
func covers(r *policy.Rule, src, dst string, port uint16, proto uint8) bool {
	side := func(names []string, sels []policy.Selector, seg string) bool {
		return slices.Contains(names, seg) ||
			slices.ContainsFunc(sels, func(s policy.Selector) bool { return s.Segment == "" || s.Segment == seg })
	}
	return side(r.From, r.FromSelectors, src) && side(r.To, r.ToSelectors, dst) &&
		slices.ContainsFunc(r.Ports, func(ps policy.PortSpec) bool { return ps.Matches(port, proto) })
}

// identityRuleCovers reports whether an enforced allow rule restricted to
// identities covers the connection.
func identityRuleCovers(p *policy.Policy, src, dst string, port uint16, proto uint8) bool {
	for i := range p.Rules {
		r := &p.Rules[i]
		if len(r.Identities) > 0 && r.Action != policy.ActionDeny && r.Mode != policy.ModeStaged && covers(r, src, dst, port, proto) {
			return true
		}
	}
	return false
}

func sensitive(tags []string) bool {
	return slices.Contains(tags, "sensitive") || slices.Contains(tags, "pci-cde")
}

type target struct {
	addr     netip.Addr
	workload string
}

// targets picks up to n addresses of seg: inventory workloads whose
// address falls in seg first (in file order), then host 1, 2, ... of each
// of seg's CIDRs in turn. An address a more specific prefix gives to
// another segment, or the prober's own, is skipped.
func targets(m *policy.Matcher, seg policy.Segment, self netip.Addr, n int) []target {
	var out []target
	seen := map[netip.Addr]bool{self: true}
	try := func(a netip.Addr, workload string) {
		if len(out) >= n || seen[a] || !a.IsValid() {
			return
		}
		ep := m.Lookup(schemas.AddrFromNetip(a))
		if ep.Segment != seg.Name {
			return
		}
		seen[a] = true
		if workload == "" {
			workload = ep.Workload
		}
		out = append(out, target{a, workload})
	}
	for _, e := range m.Policy().Inventory {
		try(firstHost(e.CIDR, 0), e.Workload)
	}
	for i := 0; len(out) < n && i < n; i++ {
		for _, c := range seg.CIDRs {
			try(firstHost(c, i), "")
		}
	}
	return out
}

// firstHost returns host i (0-based) of prefix c, skipping the network
// address of prefixes that have one (IPv4 up to /30, IPv6 up to /126);
// invalid when c has fewer hosts.
func firstHost(c netip.Prefix, i int) netip.Addr {
	c = c.Masked()
	a := c.Addr()
	bits := a.BitLen() - c.Bits()
	if bits >= 2 {
		i++ // skip the network (IPv4) / subnet-router anycast (IPv6) address
	}
	if bits < 63 && uint64(i) >= uint64(1)<<bits {
		return netip.Addr{}
	}
	for ; i > 0; i-- {
		a = a.Next()
		if !c.Contains(a) {
			return netip.Addr{}
		}
	}
	return a
}
