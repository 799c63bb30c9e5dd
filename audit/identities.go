package audit

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

// Kinds of identity.
const (
	KindUser           = "user"            // bound by a login (access events)
	KindServiceAccount = "service_account" // an inventory service account, or a Kubernetes one (system:serviceaccount:NS:NAME)
)

// Sources of an identity access row.
const (
	SourceFlow   = "flow"   // flows only
	SourceAccess = "access" // access events only (no exporter saw the path)
	SourceBoth   = "flow+access"
)

// SensitiveTags are the segment tags that make a segment sensitive for
// the identity review.
var SensitiveTags = []string{"sensitive", "pci-cde"}

// IdentityReview is the result of ReviewIdentities: the access review of
// every user and service account over a window (PCI DSS 7.2.4).
type IdentityReview struct {
	From    time.Time       `json:"window_from"`
	To      time.Time       `json:"window_to"`
	Summary IdentitySummary `json:"summary"`
	// Identities has one row per identity × destination (segment and
	// workload) × service (port and protocol), sorted by identity,
	// dst_segment, dst_workload, proto, dst_port.
	Identities []IdentityAccess `json:"identities"`
	// Profiles has one entry per identity, sorted by identity.
	Profiles []IdentityProfile `json:"profiles"`
	// Dormant are the entitlements of identity-scoped rules the identity
	// never used in the window, sorted by identity, rule.
	Dormant []DormantEntitlement `json:"dormant_entitlements"`
	// Unattributed is the access into sensitive segments without an
	// identity.
	Unattributed UnattributedAccess `json:"unattributed_sensitive"`
}

// IdentitySummary counts the review's contents.
type IdentitySummary struct {
	Identities      int `json:"identities"`
	Users           int `json:"users"`
	ServiceAccounts int `json:"service_accounts"`
	Rows            int `json:"rows"`
	// ViolationRows are rows with at least one violating flow or access.
	ViolationRows int `json:"violation_rows"`
	// SensitiveRows are rows into a sensitive segment.
	SensitiveRows int `json:"sensitive_rows"`
	Dormant       int `json:"dormant_entitlements"`
}

// IdentityAccess is what one identity reached on one destination and
// service in the window, from flows (the client end's identity, replies
// folded in) and access events (successful logins and sessions).
type IdentityAccess struct {
	Identity string `json:"identity"`
	Kind     string `json:"kind"`
	// SrcSegments are the segments the identity came from.
	SrcSegments []string `json:"src_segments"`
	// DstSegment and DstWorkload label the destination with the configured
	// policy. DstSegment is "" for an access event whose target no
	// address or inventory workload resolves; DstWorkload then holds the
	// target's host name.
	DstSegment  string `json:"dst_segment"`
	DstWorkload string `json:"dst_workload"`
	DstPort     uint16 `json:"dst_port"`
	Proto       uint8  `json:"proto"`
	Sensitive   bool   `json:"sensitive"`
	Flows       uint64 `json:"flows"`
	Bytes       uint64 `json:"bytes"`
	// AccessEvents counts successful access events (sshd logins, gateway
	// sessions...) on the destination.
	AccessEvents uint64 `json:"access_events"`
	Source       string `json:"source"`
	// Verdict is violation when any flow or access was one, else allowed,
	// intra_segment or unknown; Rule is the rule that decided the most of
	// them (the deny rule, or "", for a violation) and Rules every rule
	// that decided any.
	Verdict string   `json:"verdict"`
	Rule    string   `json:"rule"`
	Rules   []string `json:"rules"`
	// ViolationFlows counts the flows and access events that were
	// violations.
	ViolationFlows uint64    `json:"violation_flows"`
	FirstSeen      time.Time `json:"first_seen"`
	LastSeen       time.Time `json:"last_seen"`
	// Examples are up to three "client -> server" pairs ("client ->
	// host (source)" for access events).
	Examples []string `json:"examples"`
}

// IdentityProfile sums up one identity.
type IdentityProfile struct {
	Identity string `json:"identity"`
	Kind     string `json:"kind"`
	// Segments are every segment the identity was seen in or reached.
	Segments     []string `json:"segments"`
	SrcSegments  []string `json:"src_segments"`
	DstSegments  []string `json:"dst_segments"`
	DstWorkloads []string `json:"dst_workloads"`
	// Ports are the services reached ("5432/tcp"), by protocol number then
	// port, consecutive TCP and UDP ports as a range ("8000-8029/tcp").
	Ports          []string  `json:"ports"`
	Rules          []string  `json:"rules"`
	Destinations   int       `json:"destinations"`
	Sensitive      int       `json:"sensitive_destinations"`
	Flows          uint64    `json:"flows"`
	AccessEvents   uint64    `json:"access_events"`
	ViolationFlows uint64    `json:"violation_flows"`
	FirstSeen      time.Time `json:"first_seen"`
	LastSeen       time.Time `json:"last_seen"`
	// Dormant names the rules entitling the identity that it never used.
	Dormant []string `json:"dormant_rules"`
}

// DormantEntitlement is an identity listed in an enforced allow rule's
// identities that no flow or access of the window used that rule for.
type DormantEntitlement struct {
	Identity string   `json:"identity"`
	Kind     string   `json:"kind"`
	Rule     string   `json:"rule"`
	From     []string `json:"from"`
	To       []string `json:"to"`
	Ports    []string `json:"ports"`
	// Seen tells whether the identity was active at all in the window.
	Seen bool `json:"identity_seen"`
	Line int  `json:"line"`
}

// UnattributedAccess is the cross-segment traffic into sensitive segments
// and the part of it no identity was behind.
type UnattributedAccess struct {
	Segments   []string `json:"segments"`
	Flows      uint64   `json:"flows"`
	TotalFlows uint64   `json:"total_flows"`
	Share      float64  `json:"share"`
	// BySegment is per sensitive destination segment, sorted by segment.
	BySegment []UnattributedSegment `json:"by_segment"`
}

// UnattributedSegment is UnattributedAccess for one segment.
type UnattributedSegment struct {
	Segment    string  `json:"segment"`
	Flows      uint64  `json:"flows"`
	TotalFlows uint64  `json:"total_flows"`
	Share      float64 `json:"share"`
	// Sources are the clients of the unattributed flows with their flows
	// (most first, at most five).
	Sources []Count `json:"sources"`
	// Ports are the unattributed services ("22/tcp") with their flows.
	Ports []Count `json:"ports"`
}

// IdentityOptions configures ReviewIdentities.
type IdentityOptions struct {
	Window query.Window
	// Identity, when set, keeps that identity only (the summary, dormant
	// entitlements and unattributed share still cover everyone).
	Identity string
	// Examples bounds the example pairs per row (3).
	Examples int
}

// ReviewIdentities builds the identity access review from the identity
// edges and access sessions of a window (query.Reader.IdentityEdges,
// AccessSessions) under the configured policy m. Addresses are labelled
// with m (segments, workloads, tags); verdicts and rules of flows are the
// enricher's, those of access events are m's decision on the session
// (client address to target, the user as identity) when both ends
// resolve, else unknown. An access event's target is its destination
// address, else its destination host as an address or inventory workload
// name, else the host that wrote the log line as a workload name; sshd
// logins without a port count as 22/tcp and every access event as TCP;
// an event without a port otherwise gets no verdict (unknown).
func ReviewIdentities(edges []query.IdentityEdge, sessions []query.AccessSession, m *policy.Matcher, opt IdentityOptions) *IdentityReview {
	if opt.Examples <= 0 {
		opt.Examples = 3
	}
	p := m.Policy()
	serviceAccounts := map[string]bool{}
	workloads := map[string]netip.Addr{}
	for _, e := range p.Inventory {
		if e.ServiceAccount != "" {
			serviceAccounts[e.ServiceAccount] = true
		}
		if _, ok := workloads[e.Workload]; e.Workload != "" && !ok {
			workloads[e.Workload] = e.CIDR.Addr()
		}
	}
	kind := func(id string) string {
		if serviceAccounts[id] || strings.HasPrefix(id, "system:serviceaccount:") {
			return KindServiceAccount
		}
		return KindUser
	}

	type rowKey struct {
		id, seg, wl string
		proto       uint8
		port        uint16
	}
	type acc struct {
		row      IdentityAccess
		src      map[string]bool
		rules    counter
		verdicts map[string]bool
		examples map[string]bool
	}
	rows := map[rowKey]*acc{}
	// used holds identity|rule for every rule that decided an identity's
	// access (the client's service account counts as an identity too,
	// since rules match either).
	used := map[string]bool{}
	seen := map[string]bool{}
	review := &IdentityReview{From: opt.Window.From.UTC(), To: opt.Window.To.UTC(), Identities: []IdentityAccess{},
		Profiles: []IdentityProfile{}, Dormant: []DormantEntitlement{}}
	un := map[string]*UnattributedSegment{}
	unSources, unPorts := map[string]counter{}, map[string]counter{}

	add := func(id string, src *policy.Endpoint, srcKnown bool, dst *policy.Endpoint, dstName string, port uint16, proto uint8, flows, bytes, events uint64,
		verdict, rule string, first, last time.Time, example string) {
		seg, wl := dst.Segment, dst.Workload
		if dstName != "" {
			seg, wl = "", dstName
		}
		k := rowKey{id, seg, wl, proto, port}
		a := rows[k]
		if a == nil {
			a = &acc{row: IdentityAccess{Identity: id, Kind: kind(id), DstSegment: seg, DstWorkload: wl, DstPort: port, Proto: proto,
				Sensitive: dstName == "" && sensitive(dst)}, src: map[string]bool{}, rules: counter{}, verdicts: map[string]bool{},
				examples: map[string]bool{}}
			rows[k] = a
		}
		r := &a.row
		r.Flows += flows
		r.Bytes += bytes
		r.AccessEvents += events
		if verdict == policy.VerdictViolation.String() {
			r.ViolationFlows += flows + events
		}
		a.verdicts[verdict] = true
		if rule != "" {
			a.rules.add(rule, flows+events)
			used[id+"|"+rule] = true
			if src.ServiceAccount != "" {
				used[src.ServiceAccount+"|"+rule] = true
			}
		}
		if srcKnown {
			a.src[src.Segment] = true
		}
		r.FirstSeen, r.LastSeen = minTime(r.FirstSeen, first), maxTime(r.LastSeen, last)
		a.examples[example] = true
		seen[id] = true
	}

	for i := range edges {
		e := &edges[i]
		src, dst := m.Lookup(addr(e.Client)), m.Lookup(addr(e.Server))
		port := e.Port
		if e.Proto == policy.ProtoICMP || e.Proto == policy.ProtoICMPv6 {
			port = 0
		}
		if e.Identity == "" {
			if src.Segment != dst.Segment && sensitive(dst) {
				u := un[dst.Segment]
				if u == nil {
					u = &UnattributedSegment{Segment: dst.Segment}
					un[dst.Segment] = u
					unSources[dst.Segment], unPorts[dst.Segment] = counter{}, counter{}
				}
				u.TotalFlows += e.Flows
				u.Flows += e.Flows
				unSources[dst.Segment].add(e.Client.String(), e.Flows)
				unPorts[dst.Segment].add(portProto(port, e.Proto), e.Flows)
			}
			continue
		}
		if src.Segment != dst.Segment && sensitive(dst) {
			u := un[dst.Segment]
			if u == nil {
				u = &UnattributedSegment{Segment: dst.Segment}
				un[dst.Segment] = u
				unSources[dst.Segment], unPorts[dst.Segment] = counter{}, counter{}
			}
			u.TotalFlows += e.Flows
		}
		if opt.Identity != "" && e.Identity != opt.Identity {
			seen[e.Identity] = true
			continue
		}
		add(e.Identity, src, true, dst, "", port, e.Proto, e.Flows, e.Bytes, 0, e.Verdict, e.Rule, e.FirstSeen, e.LastSeen,
			e.Client.String()+" -> "+e.Server.String())
	}

	for i := range sessions {
		s := &sessions[i]
		if opt.Identity != "" && s.User != opt.Identity {
			seen[s.User] = true
			continue
		}
		src := m.Lookup(addr(s.SrcAddr))
		dst, name := accessTarget(m, workloads, s)
		port, proto := s.DstPort, policy.ProtoTCP
		if port == 0 && s.Source == "sshd" {
			port = 22
		}
		verdict, rule := policy.VerdictUnknown, ""
		if name == "" && s.SrcAddr.IsValid() && port != 0 {
			k := policy.FlowKey{Src: src, Dst: dst, SrcPort: 0, DstPort: port, Proto: proto, SrcIdentity: s.User}
			verdict, rule = m.Decide(&k)
		}
		target := name
		if target == "" {
			target = s.DstAddr.String()
			if !s.DstAddr.IsValid() {
				target = dst.Workload
			}
		}
		client := "?"
		if s.SrcAddr.IsValid() {
			client = s.SrcAddr.String()
		}
		add(s.User, src, s.SrcAddr.IsValid(), dst, name, port, proto, 0, 0, s.Events, verdict.String(), rule, s.From, s.To,
			fmt.Sprintf("%s -> %s (%s)", client, target, s.Source))
	}

	for _, a := range rows {
		r := &a.row
		switch {
		case a.verdicts[policy.VerdictViolation.String()]:
			r.Verdict = policy.VerdictViolation.String()
		case a.verdicts[policy.VerdictAllowed.String()]:
			r.Verdict = policy.VerdictAllowed.String()
		case a.verdicts[policy.VerdictIntraSegment.String()]:
			r.Verdict = policy.VerdictIntraSegment.String()
		default:
			r.Verdict = policy.VerdictUnknown.String()
		}
		r.Rules = []string{}
		for _, c := range a.rules.top(0) {
			r.Rules = append(r.Rules, c.Value)
		}
		if len(r.Rules) > 0 {
			r.Rule = r.Rules[0]
		}
		sort.Strings(r.Rules)
		r.SrcSegments = sortedKeys(a.src)
		switch {
		case r.Flows > 0 && r.AccessEvents > 0:
			r.Source = SourceBoth
		case r.Flows > 0:
			r.Source = SourceFlow
		default:
			r.Source = SourceAccess
		}
		ex := sortedKeys(a.examples)
		if len(ex) > opt.Examples {
			ex = ex[:opt.Examples]
		}
		r.Examples = ex
		review.Identities = append(review.Identities, *r)
	}
	sort.Slice(review.Identities, func(i, j int) bool { return identityRowLess(&review.Identities[i], &review.Identities[j]) })

	// Dormant entitlements: identities of enforced allow rules that used
	// the rule for nothing.
	dormant := map[string][]string{}
	for _, r := range p.Rules {
		if len(r.Identities) == 0 || r.Deny() || r.Staged() {
			continue
		}
		ids := append([]string(nil), r.Identities...)
		sort.Strings(ids)
		for _, id := range ids {
			if used[id+"|"+r.Name] || (opt.Identity != "" && id != opt.Identity) {
				continue
			}
			d := DormantEntitlement{Identity: id, Kind: kind(id), Rule: r.Name, From: ruleEnds(r.From, r.FromSelectors),
				To: ruleEnds(r.To, r.ToSelectors), Ports: []string{}, Seen: seen[id], Line: r.Line}
			for _, s := range r.Ports {
				d.Ports = append(d.Ports, s.String())
			}
			review.Dormant = append(review.Dormant, d)
			dormant[id] = append(dormant[id], r.Name)
		}
	}
	sort.SliceStable(review.Dormant, func(i, j int) bool {
		a, b := &review.Dormant[i], &review.Dormant[j]
		if a.Identity != b.Identity {
			return a.Identity < b.Identity
		}
		return a.Rule < b.Rule
	})

	// Profiles, one per identity with rows or dormant entitlements.
	profiles := map[string]*IdentityProfile{}
	type sets struct {
		seg, src, dst, wl, rules map[string]bool
		ports                    map[uint32]bool // proto<<16 | port
	}
	pset := map[string]*sets{}
	profile := func(id string) (*IdentityProfile, *sets) {
		pr := profiles[id]
		if pr == nil {
			pr = &IdentityProfile{Identity: id, Kind: kind(id)}
			profiles[id] = pr
			pset[id] = &sets{map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}, map[uint32]bool{}}
		}
		return pr, pset[id]
	}
	for i := range review.Identities {
		r := &review.Identities[i]
		pr, s := profile(r.Identity)
		for _, seg := range r.SrcSegments {
			s.src[seg], s.seg[seg] = true, true
		}
		if r.DstSegment != "" {
			s.dst[r.DstSegment], s.seg[r.DstSegment] = true, true
		}
		if r.DstWorkload != "" {
			s.wl[r.DstWorkload] = true
		}
		if serviceName(r.DstPort, r.Proto) != "" {
			s.ports[uint32(r.Proto)<<16|uint32(r.DstPort)] = true
		}
		for _, rule := range r.Rules {
			s.rules[rule] = true
		}
		pr.Destinations++
		if r.Sensitive {
			pr.Sensitive++
		}
		pr.Flows += r.Flows
		pr.AccessEvents += r.AccessEvents
		pr.ViolationFlows += r.ViolationFlows
		pr.FirstSeen, pr.LastSeen = minTime(pr.FirstSeen, r.FirstSeen), maxTime(pr.LastSeen, r.LastSeen)
	}
	for id, rules := range dormant {
		pr, _ := profile(id)
		pr.Dormant = rules
	}
	for id, pr := range profiles {
		s := pset[id]
		pr.Segments, pr.SrcSegments, pr.DstSegments = sortedKeys(s.seg), sortedKeys(s.src), sortedKeys(s.dst)
		pr.DstWorkloads, pr.Rules = sortedKeys(s.wl), sortedKeys(s.rules)
		pr.Ports = portRanges(s.ports)
		if pr.Dormant == nil {
			pr.Dormant = []string{}
		}
		sort.Strings(pr.Dormant)
		review.Profiles = append(review.Profiles, *pr)
	}
	sort.Slice(review.Profiles, func(i, j int) bool { return review.Profiles[i].Identity < review.Profiles[j].Identity })

	// Unattributed share.
	u := &review.Unattributed
	u.Segments, u.BySegment = []string{}, []UnattributedSegment{}
	for _, s := range p.Segments {
		if sensitiveTags(s.Tags) {
			u.Segments = append(u.Segments, s.Name)
		}
	}
	sort.Strings(u.Segments)
	for _, name := range u.Segments {
		s := un[name]
		if s == nil {
			s = &UnattributedSegment{Segment: name}
		}
		s.Sources, s.Ports = []Count{}, []Count{}
		if unSources[name] != nil {
			s.Sources, s.Ports = unSources[name].top(5), unPorts[name].top(5)
		}
		s.Share = share(s.Flows, s.TotalFlows)
		u.Flows += s.Flows
		u.TotalFlows += s.TotalFlows
		u.BySegment = append(u.BySegment, *s)
	}
	u.Share = share(u.Flows, u.TotalFlows)

	sum := &review.Summary
	for _, pr := range review.Profiles {
		sum.Identities++
		if pr.Kind == KindServiceAccount {
			sum.ServiceAccounts++
		} else {
			sum.Users++
		}
	}
	sum.Rows, sum.Dormant = len(review.Identities), len(review.Dormant)
	for _, r := range review.Identities {
		if r.Verdict == policy.VerdictViolation.String() {
			sum.ViolationRows++
		}
		if r.Sensitive {
			sum.SensitiveRows++
		}
	}
	return review
}

// accessTarget resolves an access session's target: its endpoint, or ""
// and the endpoint of no address with the target's name when nothing
// resolves it.
func accessTarget(m *policy.Matcher, workloads map[string]netip.Addr, s *query.AccessSession) (*policy.Endpoint, string) {
	if s.DstAddr.IsValid() {
		return m.Lookup(addr(s.DstAddr)), ""
	}
	for _, name := range []string{s.DstHost, s.Host} {
		if name == "" {
			continue
		}
		if a, err := netip.ParseAddr(name); err == nil {
			return m.Lookup(addr(a.Unmap())), ""
		}
		if a, ok := workloads[name]; ok {
			return m.Lookup(addr(a)), ""
		}
	}
	name := s.DstHost
	if name == "" {
		name = s.Host
	}
	if name == "" {
		name = "?"
	}
	return m.Lookup(addr(netip.Addr{})), name
}

// sensitive reports whether e's segment carries a SensitiveTags tag.
func sensitive(e *policy.Endpoint) bool { return sensitiveTags(e.Tags) }

func sensitiveTags(tags []string) bool {
	for _, t := range tags {
		for _, s := range SensitiveTags {
			if t == s {
				return true
			}
		}
	}
	return false
}

func share(part, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return float64(part) / float64(total)
}

func ruleEnds(names []string, sels []policy.Selector) []string {
	out := append([]string{}, names...)
	for _, s := range sels {
		out = append(out, s.String())
	}
	return out
}

// serviceName is portProto, or "" for port 0 of a protocol with ports
// (an access event that named no port).
func serviceName(port uint16, proto uint8) string {
	if port == 0 && (proto == policy.ProtoTCP || proto == policy.ProtoUDP) {
		return ""
	}
	return portProto(port, proto)
}

// portRanges lists services (proto<<16 | port) by protocol number, then
// port, with runs of consecutive TCP or UDP ports written as one range
// ("8000-8029/tcp").
func portRanges(set map[uint32]bool) []string {
	keys := make([]uint32, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	out := []string{}
	for i := 0; i < len(keys); {
		proto, lo := uint8(keys[i]>>16), uint16(keys[i])
		j := i
		if proto == policy.ProtoTCP || proto == policy.ProtoUDP {
			for j+1 < len(keys) && keys[j+1] == keys[j]+1 {
				j++
			}
		}
		if j > i {
			out = append(out, policy.PortSpec{Lo: lo, Hi: uint16(keys[j]), Proto: proto}.String())
		} else {
			out = append(out, portProto(lo, proto))
		}
		i = j + 1
	}
	return out
}

func identityRowLess(a, b *IdentityAccess) bool {
	switch {
	case a.Identity != b.Identity:
		return a.Identity < b.Identity
	case a.DstSegment != b.DstSegment:
		return a.DstSegment < b.DstSegment
	case a.DstWorkload != b.DstWorkload:
		return a.DstWorkload < b.DstWorkload
	case a.Proto != b.Proto:
		return a.Proto < b.Proto
	}
	return a.DstPort < b.DstPort
}
