package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/schemas"
)

// Finding kinds of Gaps.
const (
	KindUnusedRule           = "UNUSED_RULE"
	KindShadowedRule         = "SHADOWED_RULE"
	KindRedundantRule        = "REDUNDANT_RULE"
	KindBroadPorts           = "BROAD_PORTS"
	KindBroadPeers           = "BROAD_PEERS"
	KindSilentSegment        = "SILENT_SEGMENT"
	KindOversegmented        = "OVERSEGMENTED"
	KindUndersegmented       = "UNDERSEGMENTED"
	KindUnlabelledSpace      = "UNLABELLED_SPACE"
	KindExposedSensitive     = "EXPOSED_SENSITIVE"
	KindViolationHotspot     = "VIOLATION_HOTSPOT"
	KindEnvCrossing          = "ENV_CROSSING"
	KindLateralPath          = "LATERAL_PATH"
	KindMissingJustification = "MISSING_JUSTIFICATION"
	KindOverdueReview        = "OVERDUE_REVIEW"
	KindEnforcementGap       = "ENFORCEMENT_GAP"
)

// FindingKinds lists every kind Gaps reports, in documentation order.
var FindingKinds = []string{KindUnusedRule, KindShadowedRule, KindRedundantRule, KindBroadPorts, KindBroadPeers,
	KindSilentSegment, KindOversegmented, KindUndersegmented, KindUnlabelledSpace, KindExposedSensitive,
	KindViolationHotspot, KindEnvCrossing, KindLateralPath, KindMissingJustification, KindOverdueReview,
	KindEnforcementGap}

// Severities of findings, lowest first.
var Severities = []string{"low", "medium", "high", "critical"}

// SeverityRank is the position of s in Severities, -1 when s is none.
func SeverityRank(s string) int {
	for i, v := range Severities {
		if v == s {
			return i
		}
	}
	return -1
}

// GapReport is the result of Gaps.
type GapReport struct {
	From time.Time `json:"window_from"`
	To   time.Time `json:"window_to"`
	// Summary counts findings per severity.
	Summary map[string]int `json:"summary"`
	// Findings are sorted by severity (highest first), kind (in
	// FindingKinds order), rule, segment, id.
	Findings []Finding `json:"findings"`
}

// Finding is one gap between the policy, its metadata and the traffic.
// ID is stable: a hash of the kind and what the finding is about (rule,
// segments, ports), never of counts, so re-runs and later windows give
// the same ID to the same problem.
type Finding struct {
	ID       string      `json:"id"`
	Kind     string      `json:"kind"`
	Severity string      `json:"severity"`
	Rule     string      `json:"rule"`
	Segment  string      `json:"segment"`
	Message  string      `json:"message"`
	Evidence GapEvidence `json:"evidence"`
}

// Hop is one step of a lateral path: a segment pair and the rule that
// allows it, with the ports (and, on observed paths, the flows).
type Hop struct {
	From  string   `json:"from"`
	To    string   `json:"to"`
	Rule  string   `json:"rule"`
	Ports []string `json:"ports"`
	Flows uint64   `json:"flows,omitempty"`
}

// WorkloadGroup is a set of workloads of one segment and the peer
// segments they talk to (UNDERSEGMENTED).
type WorkloadGroup struct {
	Workloads []string `json:"workloads"`
	Peers     []string `json:"peers"`
}

// GapEvidence backs a finding; which fields are set depends on the kind.
// Times are RFC 3339, pairs read "from -> to", ports "port/proto".
type GapEvidence struct {
	Flows        uint64          `json:"flows,omitempty"`
	Bytes        uint64          `json:"bytes,omitempty"`
	FirstSeen    string          `json:"first_seen,omitempty"`
	LastSeen     string          `json:"last_seen,omitempty"`
	Action       string          `json:"action,omitempty"`
	Ports        []string        `json:"ports,omitempty"`
	CoveredBy    []string        `json:"covered_by,omitempty"`
	TakenOverBy  []string        `json:"taken_over_by,omitempty"`
	Default      string          `json:"default,omitempty"`
	UsedPorts    []string        `json:"used_ports,omitempty"`
	PortSpan     uint64          `json:"port_span,omitempty"`
	Utilisation  float64         `json:"utilisation,omitempty"`
	AllowedPairs []string        `json:"allowed_pairs,omitempty"`
	UsedPairs    []string        `json:"used_pairs,omitempty"`
	UnusedPairs  []string        `json:"unused_pairs,omitempty"`
	Segments     []string        `json:"segments,omitempty"`
	Profile      []string        `json:"profile,omitempty"`
	Groups       []WorkloadGroup `json:"groups,omitempty"`
	Prefix       string          `json:"prefix,omitempty"`
	Addresses    []string        `json:"addresses,omitempty"`
	Peers        []string        `json:"peers,omitempty"`
	Rules        []string        `json:"rules,omitempty"`
	Reasons      []string        `json:"reasons,omitempty"`
	Envs         []string        `json:"envs,omitempty"`
	PolicyPath   []Hop           `json:"policy_path,omitempty"`
	ObservedPath []Hop           `json:"observed_path,omitempty"`
	Hours        uint64          `json:"hours,omitempty"`
	ReviewBy     string          `json:"review_by,omitempty"`
	FirstApplied string          `json:"first_applied,omitempty"`
	Version      string          `json:"version,omitempty"`
	AgeDays      int             `json:"age_days,omitempty"`
	Verdict      string          `json:"verdict,omitempty"`
	FwAction     string          `json:"fw_action,omitempty"`
	Examples     []string        `json:"examples,omitempty"`
}

// GapsInput is what Gaps reads besides the policy: rows of query/ over
// the window (AppliedPolicies over all history).
type GapsInput struct {
	Edges      []query.ServiceEdge         // Reader.ServiceEdges
	Violations []query.ViolationEdge       // Reader.ViolationEdges
	Mismatches []query.EnforcementMismatch // Reader.EnforcementMismatches
	Versions   []query.AppliedPolicy       // Reader.AppliedPolicies
}

// GapsOptions configures Gaps.
type GapsOptions struct {
	Window query.Window
	// HotspotHours is the number of distinct hours with violations on one
	// edge from which they are a hotspot (3).
	HotspotHours uint64
	// ReviewAge is how long a rule without review_by may stay applied
	// (180 days: six months).
	ReviewAge time.Duration
	// BroadMinSpan and BroadMaxUtilisation: an allow rule is BROAD_PORTS
	// when its port specs span at least BroadMinSpan ports (16) and the
	// distinct ports used are under BroadMaxUtilisation of them (0.10).
	BroadMinSpan        uint64
	BroadMaxUtilisation float64
	// SensitiveTags mark sensitive segments (sensitive, pci-cde);
	// LowTrustTags segments from which lateral paths start besides
	// external (low-trust, untrusted).
	SensitiveTags, LowTrustTags []string
}

// DefaultGapsOptions returns the documented defaults over w.
func DefaultGapsOptions(w query.Window) GapsOptions {
	return GapsOptions{Window: w, HotspotHours: 3, ReviewAge: 180 * 24 * time.Hour, BroadMinSpan: 16,
		BroadMaxUtilisation: 0.10, SensitiveTags: []string{"sensitive", "pci-cde"},
		LowTrustTags: []string{"low-trust", "untrusted"}}
}

// ruleUse is the traffic one rule decided.
type ruleUse struct {
	flows, bytes uint64
	first, last  time.Time
	ports        map[string]bool
	pairs        map[[2]string]uint64
}

// segEdge is observed traffic from one segment to another.
type segEdge struct {
	flows     uint64
	ports     map[string]bool
	rules     map[string]uint64          // allowing rule -> flows
	rulePorts map[string]map[string]bool // allowing rule -> ports
}

// traffic is the window's edges relabelled and decided by the policy.
type traffic struct {
	rules    map[string]*ruleUse
	segFlows map[string]uint64
	profile  map[string]map[string]bool
	edges    map[[2]string]*segEdge // every cross-segment edge, any verdict
	allowed  map[[2]string]*segEdge // allowed by a rule (or the default)
	// units: per segment, per workload (or address), its peer segments;
	// links: workloads of one segment that talk to each other.
	units    map[string]map[string]map[string]bool
	links    map[string][][2]string
	private  map[netip.Prefix]*privSpace
	external map[[2]string]*segEdge // allowed from external into a segment
}

type privSpace struct {
	addrs map[string]bool
	peers map[string]bool
	flows uint64
	first time.Time
	last  time.Time
}

func newTraffic() *traffic {
	return &traffic{rules: map[string]*ruleUse{}, segFlows: map[string]uint64{}, profile: map[string]map[string]bool{},
		edges: map[[2]string]*segEdge{}, allowed: map[[2]string]*segEdge{}, units: map[string]map[string]map[string]bool{},
		links: map[string][][2]string{}, private: map[netip.Prefix]*privSpace{}, external: map[[2]string]*segEdge{}}
}

func (t *traffic) use(rule string, e *query.ServiceEdge, pair [2]string, pp string) {
	u := t.rules[rule]
	if u == nil {
		u = &ruleUse{ports: map[string]bool{}, pairs: map[[2]string]uint64{}}
		t.rules[rule] = u
	}
	u.flows += e.Flows
	u.bytes += e.Bytes
	u.first, u.last = minTime(u.first, e.FirstSeen), maxTime(u.last, e.LastSeen)
	u.ports[pp] = true
	u.pairs[pair] += e.Flows
}

func addSegEdge(m map[[2]string]*segEdge, k [2]string, flows uint64, pp, rule string) {
	se := m[k]
	if se == nil {
		se = &segEdge{ports: map[string]bool{}, rules: map[string]uint64{}, rulePorts: map[string]map[string]bool{}}
		m[k] = se
	}
	se.flows += flows
	se.ports[pp] = true
	if rule != "" {
		se.rules[rule] += flows
		if se.rulePorts[rule] == nil {
			se.rulePorts[rule] = map[string]bool{}
		}
		se.rulePorts[rule][pp] = true
	}
}

func (t *traffic) unit(seg, name, peer string) {
	if t.units[seg] == nil {
		t.units[seg] = map[string]map[string]bool{}
	}
	if t.units[seg][name] == nil {
		t.units[seg][name] = map[string]bool{}
	}
	if peer != "" {
		t.units[seg][name][peer] = true
	}
}

func unitName(ep *policy.Endpoint, a netip.Addr) string {
	if ep.Workload != "" {
		return ep.Workload
	}
	return a.String()
}

func (t *traffic) addPrivate(a netip.Addr, peer string, e *query.ServiceEdge) {
	bits := 24
	if !a.Is4() {
		bits = 64
	}
	pfx, _ := a.Prefix(bits)
	ps := t.private[pfx]
	if ps == nil {
		ps = &privSpace{addrs: map[string]bool{}, peers: map[string]bool{}}
		t.private[pfx] = ps
	}
	ps.addrs[a.String()] = true
	ps.peers[peer] = true
	ps.flows += e.Flows
	ps.first, ps.last = minTime(ps.first, e.FirstSeen), maxTime(ps.last, e.LastSeen)
}

func observe(m *policy.Matcher, staged map[string]bool, edges []query.ServiceEdge) *traffic {
	t := newTraffic()
	for i := range edges {
		e := &edges[i]
		client, server := e.Client.Unmap(), e.Server.Unmap()
		src, dst := m.Lookup(addr(client)), m.Lookup(addr(server))
		k := policy.FlowKey{Src: src, Dst: dst, DstPort: e.Port, Proto: e.Proto, SrcIdentity: e.ClientIdentity,
			DstIdentity: e.ServerIdentity, ServiceSide: schemas.ServiceDst}
		v, rule := m.Decide(&k)
		pair := [2]string{src.Segment, dst.Segment}
		pp := portProto(e.Port, e.Proto)
		if rule != "" && rule != policy.DefaultRule {
			t.use(rule, e, pair, pp)
		}
		if m.HasStaged() {
			if _, srule := m.DecideStaged(&k); staged[srule] {
				t.use(srule, e, pair, pp)
			}
		}
		t.segFlows[src.Segment] += e.Flows
		t.segFlows[dst.Segment] += e.Flows
		if t.profile[src.Segment] == nil {
			t.profile[src.Segment] = map[string]bool{}
		}
		if t.profile[dst.Segment] == nil {
			t.profile[dst.Segment] = map[string]bool{}
		}
		cu, su := unitName(src, client), unitName(dst, server)
		if src.Segment == dst.Segment {
			t.profile[src.Segment]["within "+pp] = true
			t.unit(src.Segment, cu, "")
			t.unit(src.Segment, su, "")
			t.links[src.Segment] = append(t.links[src.Segment], [2]string{cu, su})
		} else {
			t.profile[src.Segment]["to "+dst.Segment+" "+pp] = true
			t.profile[dst.Segment]["from "+src.Segment+" "+pp] = true
			t.unit(src.Segment, cu, dst.Segment)
			t.unit(dst.Segment, su, src.Segment)
			addSegEdge(t.edges, pair, e.Flows, pp, "")
			if v == policy.VerdictAllowed {
				addSegEdge(t.allowed, pair, e.Flows, pp, rule)
				if src.Segment == policy.External {
					addSegEdge(t.external, [2]string{dst.Segment, ""}, e.Flows, pp, rule)
				}
			}
		}
		if src.Segment == policy.External && isPrivate(client) {
			t.addPrivate(client, dst.Segment, e)
		}
		if dst.Segment == policy.External && isPrivate(server) {
			t.addPrivate(server, src.Segment, e)
		}
	}
	return t
}

// Gaps reports the findings of the policy of m over the input (see the
// Kind constants and DESIGN.md, "The audit layer"). The static findings
// (shadowed, redundant) come from the policy alone by interval arithmetic
// over endpoint classes, identities and services (space.go); the others
// compare the policy with the window's traffic, relabelled and decided by
// m, the code the enricher runs. Connections are judged in their service
// orientation (client to server on the service port).
func Gaps(m *policy.Matcher, in GapsInput, opt GapsOptions) *GapReport {
	p := m.Policy()
	g := &gapper{p: p, opt: opt, now: opt.Window.To.UTC(), space: newFlowSpace(p), tags: map[string][]string{}}
	for _, s := range p.Segments {
		g.tags[s.Name] = s.Tags
	}
	staged := map[string]bool{}
	for _, r := range p.Rules {
		if r.Staged() {
			staged[r.Name] = true
		}
	}
	g.cov = g.space.analyse()
	g.t = observe(m, staged, in.Edges)

	g.ruleFindings()
	g.segmentFindings()
	g.unlabelled()
	g.exposed()
	g.hotspots(in.Violations)
	g.envCrossing()
	g.lateral()
	g.reviews(in.Versions)
	g.enforcement(in.Mismatches)

	rep := &GapReport{From: opt.Window.From.UTC(), To: opt.Window.To.UTC(), Summary: map[string]int{}, Findings: g.out}
	if rep.Findings == nil {
		rep.Findings = []Finding{}
	}
	for _, s := range Severities {
		rep.Summary[s] = 0
	}
	kindOrder := map[string]int{}
	for i, k := range FindingKinds {
		kindOrder[k] = i
	}
	for _, f := range rep.Findings {
		rep.Summary[f.Severity]++
	}
	sort.Slice(rep.Findings, func(i, j int) bool {
		a, b := &rep.Findings[i], &rep.Findings[j]
		switch {
		case a.Severity != b.Severity:
			return SeverityRank(a.Severity) > SeverityRank(b.Severity)
		case a.Kind != b.Kind:
			return kindOrder[a.Kind] < kindOrder[b.Kind]
		case a.Rule != b.Rule:
			return a.Rule < b.Rule
		case a.Segment != b.Segment:
			return a.Segment < b.Segment
		}
		return a.ID < b.ID
	})
	return rep
}

type gapper struct {
	p     *policy.Policy
	opt   GapsOptions
	now   time.Time
	space *flowSpace
	cov   []coverage
	t     *traffic
	tags  map[string][]string
	out   []Finding
}

// findingID is the stable id of a finding: its kind and a short hash of
// what it is about.
func findingID(kind string, key ...string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + strings.Join(key, "\x00")))
	return kind + "-" + hex.EncodeToString(sum[:5])
}

func (g *gapper) add(kind, severity, rule, segment, msg string, ev GapEvidence, key ...string) {
	g.out = append(g.out, Finding{ID: findingID(kind, key...), Kind: kind, Severity: severity, Rule: rule,
		Segment: segment, Message: msg, Evidence: ev})
}

func (g *gapper) hasTag(seg string, tags []string) bool {
	for _, t := range g.tags[seg] {
		for _, w := range tags {
			if t == w {
				return true
			}
		}
	}
	return false
}

func (g *gapper) sensitive(seg string) bool { return g.hasTag(seg, g.opt.SensitiveTags) }

func env(tags []string) string {
	for _, t := range tags {
		if v, ok := strings.CutPrefix(t, "env:"); ok {
			return v
		}
	}
	return ""
}

func action(r *policy.Rule) string {
	if r.Deny() {
		return policy.ActionDeny
	}
	return policy.ActionAllow
}

func ruleNames(p *policy.Policy, idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = p.Rules[j].Name
	}
	return out
}

func specStrings(ports []policy.PortSpec) []string {
	out := make([]string, len(ports))
	for i, ps := range ports {
		out[i] = ps.String()
	}
	return out
}

func pairString(k [2]string) string { return k[0] + " -> " + k[1] }

// portSpan is how many (port, protocol) services the rule's specs cover,
// counting only specs with ports (ICMP specs name no ports); a spec of any
// protocol counts TCP and UDP.
func portSpan(ports []policy.PortSpec) uint64 {
	var n uint64
	for _, ps := range ports {
		w := uint64(ps.Hi) - uint64(ps.Lo) + 1
		switch ps.Proto {
		case policy.ProtoICMP, policy.ProtoICMPv6:
		case policy.ProtoAny:
			n += 2 * w
		default:
			n += w
		}
	}
	return n
}

func (g *gapper) ruleFindings() {
	for i := range g.p.Rules {
		r := &g.p.Rules[i]
		c := g.cov[i]
		act := action(r)
		mode := ""
		if r.Staged() {
			mode = "staged "
		}
		switch {
		case c.shadowed:
			conflict := false
			for _, j := range c.coveredBy {
				if g.p.Rules[j].Deny() != r.Deny() {
					conflict = true
				}
			}
			sev, msg := "medium", fmt.Sprintf("%s%s rule %q never decides a connection: every connection it matches is decided first by %s; delete it or move it above them",
				mode, act, r.Name, quoteJoin(ruleNames(g.p, c.coveredBy)))
			if conflict {
				sev = "high"
				msg = fmt.Sprintf("%s%s rule %q never takes effect: every connection it matches is decided first by %s with the opposite action; move it above them if the %s is intended",
					mode, act, r.Name, quoteJoin(ruleNames(g.p, c.coveredBy)), act)
			}
			g.add(KindShadowedRule, sev, r.Name, "", msg, GapEvidence{Action: act, Ports: specStrings(r.Ports),
				CoveredBy: ruleNames(g.p, c.coveredBy)}, r.Name)
		case c.redundant:
			ev := GapEvidence{Action: act, Ports: specStrings(r.Ports), TakenOverBy: ruleNames(g.p, c.takenOver)}
			by := quoteJoin(ev.TakenOverBy)
			if c.byDefault {
				ev.Default = g.defaultAction()
				if by == "" {
					by = "the default " + ev.Default
				} else {
					by += " and the default " + ev.Default
				}
			}
			g.add(KindRedundantRule, "low", r.Name, "", fmt.Sprintf("%s%s rule %q is redundant: without it %s would decide every connection it decides the same way; delete it to simplify the policy",
				mode, act, r.Name, by), ev, r.Name)
		}
		if c.shadowed {
			continue // a shadowed rule has no traffic of its own to judge
		}
		u := g.t.rules[r.Name]
		if u == nil || u.flows == 0 {
			sev := "medium"
			if r.Deny() {
				sev = "low"
			}
			g.add(KindUnusedRule, sev, r.Name, "", fmt.Sprintf("%s%s rule %q decided no traffic between %s and %s; remove it if the access is no longer needed",
				mode, act, r.Name, ts(g.opt.Window.From), ts(g.opt.Window.To)),
				GapEvidence{Action: act, Ports: specStrings(r.Ports), AllowedPairs: pairStrings(g.space.segPairs(i))}, r.Name)
			continue
		}
		if r.Deny() {
			continue
		}
		if span := portSpan(r.Ports); span >= g.opt.BroadMinSpan {
			used := sortedKeys(u.ports)
			util := float64(len(used)) / float64(span)
			if util < g.opt.BroadMaxUtilisation {
				g.add(KindBroadPorts, "medium", r.Name, "", fmt.Sprintf("allow rule %q opens %d ports (%s) but only %s used (%.2f%%): %s; narrow it to the ports in use",
					r.Name, span, strings.Join(specStrings(r.Ports), ", "), count(len(used), "was", "were"), 100*util, strings.Join(used, ", ")),
					GapEvidence{Ports: specStrings(r.Ports), UsedPorts: used, PortSpan: span, Utilisation: round4(util),
						Flows: u.flows, FirstSeen: ts(u.first), LastSeen: ts(u.last)}, r.Name)
			}
		}
		allowed := g.space.segPairs(i)
		var usedPairs, unused []string
		for _, pr := range allowed {
			if u.pairs[pr] > 0 {
				usedPairs = append(usedPairs, pairString(pr))
			} else {
				unused = append(unused, pairString(pr))
			}
		}
		if len(unused) > 0 {
			g.add(KindBroadPeers, "medium", r.Name, "", fmt.Sprintf("allow rule %q allows %d segment pairs but %d never talked (%s); drop them from the rule",
				r.Name, len(allowed), len(unused), strings.Join(unused, ", ")),
				GapEvidence{AllowedPairs: pairStrings(allowed), UsedPairs: usedPairs, UnusedPairs: unused,
					Utilisation: round4(float64(len(usedPairs)) / float64(len(allowed))), Flows: u.flows}, r.Name)
		}
	}
}

func (g *gapper) defaultAction() string {
	if g.p.Default == policy.DefaultAllow {
		return policy.DefaultAllow
	}
	return policy.DefaultDeny
}

// count writes n with the singular or plural word: "1 flow", "2 flows"
// ("1 was" for a bare verb).
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func round4(f float64) float64 { return float64(int64(f*10000+0.5)) / 10000 }

func pairStrings(pairs [][2]string) []string {
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = pairString(p)
	}
	return out
}

func quoteJoin(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func (g *gapper) segmentFindings() {
	// Silent segments.
	for _, s := range g.p.Segments {
		if g.t.segFlows[s.Name] == 0 {
			g.add(KindSilentSegment, "low", "", s.Name, fmt.Sprintf("segment %q had no traffic at all between %s and %s; check that its CIDRs are right or retire it",
				s.Name, ts(g.opt.Window.From), ts(g.opt.Window.To)), GapEvidence{Prefix: prefixList(s.CIDRs)}, s.Name)
		}
	}
	// Oversegmented: declared segments with identical traffic profiles.
	byProfile := map[string][]string{}
	for _, s := range g.p.Segments {
		prof := g.t.profile[s.Name]
		if len(prof) == 0 {
			continue
		}
		k := strings.Join(sortedKeys(prof), "\n")
		byProfile[k] = append(byProfile[k], s.Name)
	}
	for k, members := range byProfile {
		if len(members) < 2 {
			continue
		}
		sort.Strings(members)
		g.add(KindOversegmented, "low", "", members[0], fmt.Sprintf("segments %s talk to the same peers on the same ports; merge them or give them different rules",
			quoteJoin(members)), GapEvidence{Segments: members, Profile: strings.Split(k, "\n")}, members...)
	}
	// Undersegmented: workloads of a segment falling into groups that
	// share no peer.
	for _, s := range g.p.Segments {
		units := g.t.units[s.Name]
		if len(units) < 2 {
			continue
		}
		parent := map[string]string{}
		var find func(string) string
		find = func(x string) string {
			if parent[x] == "" || parent[x] == x {
				return x
			}
			r := find(parent[x])
			parent[x] = r
			return r
		}
		union := func(a, b string) {
			if ra, rb := find(a), find(b); ra != rb {
				if ra < rb {
					parent[rb] = ra
				} else {
					parent[ra] = rb
				}
			}
		}
		for _, l := range g.t.links[s.Name] {
			union(l[0], l[1])
		}
		byPeer := map[string]string{}
		for _, name := range sortedKeys(boolKeys(units)) {
			for peer := range units[name] {
				if o, ok := byPeer[peer]; ok {
					union(o, name)
				} else {
					byPeer[peer] = name
				}
			}
		}
		groups := map[string]*WorkloadGroup{}
		peers := map[string]map[string]bool{}
		for _, name := range sortedKeys(boolKeys(units)) {
			root := find(name)
			if groups[root] == nil {
				groups[root] = &WorkloadGroup{}
				peers[root] = map[string]bool{}
			}
			groups[root].Workloads = append(groups[root].Workloads, name)
			for peer := range units[name] {
				peers[root][peer] = true
			}
		}
		var out []WorkloadGroup
		for root, gr := range groups {
			if len(peers[root]) == 0 {
				continue
			}
			gr.Peers = sortedKeys(peers[root])
			out = append(out, *gr)
		}
		if len(out) < 2 {
			continue
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Workloads[0] < out[j].Workloads[0] })
		var desc []string
		for _, gr := range out {
			desc = append(desc, fmt.Sprintf("%s (with %s)", strings.Join(gr.Workloads, ", "), strings.Join(gr.Peers, ", ")))
		}
		g.add(KindUndersegmented, "medium", "", s.Name, fmt.Sprintf("segment %q holds %d groups of workloads that never share a peer: %s; split it so each group gets only its own rules",
			s.Name, len(out), strings.Join(desc, "; ")), GapEvidence{Groups: out}, s.Name)
	}
}

func boolKeys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func prefixList(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ", ")
}

func (g *gapper) unlabelled() {
	pfxs := make([]netip.Prefix, 0, len(g.t.private))
	for p := range g.t.private {
		pfxs = append(pfxs, p)
	}
	sort.Slice(pfxs, func(i, j int) bool { return pfxs[i].Addr().Less(pfxs[j].Addr()) })
	for _, pfx := range pfxs {
		ps := g.t.private[pfx]
		addrs := sortedKeys(ps.addrs)
		ev := GapEvidence{Prefix: pfx.String(), Addresses: addrs, Peers: sortedKeys(ps.peers), Flows: ps.flows,
			FirstSeen: ts(ps.first), LastSeen: ts(ps.last)}
		if len(ev.Addresses) > 10 {
			ev.Addresses = ev.Addresses[:10]
		}
		g.add(KindUnlabelledSpace, "medium", "", policy.External, fmt.Sprintf("private address space %s: %s in no segment, counted as external (talking to %s); add them to the segment they belong to",
			pfx, count(len(addrs), "address", "addresses"), strings.Join(ev.Peers, ", ")), ev, pfx.String())
	}
}

func (g *gapper) exposed() {
	for _, s := range g.p.Segments {
		if !g.sensitive(s.Name) {
			continue
		}
		var rules, reasons []string
		for i := range g.p.Rules {
			r := &g.p.Rules[i]
			if r.Deny() || r.Staged() || g.cov[i].shadowed {
				continue
			}
			fromExternal, toSeg := false, false
			for _, pr := range g.space.segPairs(i) {
				if pr[1] == s.Name {
					toSeg = true
					if pr[0] == policy.External {
						fromExternal = true
					}
				}
			}
			if !toSeg {
				continue
			}
			anyPort := false
			for _, ps := range r.Ports {
				if ps.Lo == 0 && ps.Hi == 65535 && ps.Proto != policy.ProtoICMP && ps.Proto != policy.ProtoICMPv6 {
					anyPort = true
				}
			}
			switch {
			case fromExternal:
				rules = append(rules, r.Name)
				reasons = append(reasons, fmt.Sprintf("%q allows external on %s", r.Name, strings.Join(specStrings(r.Ports), ", ")))
			case anyPort:
				rules = append(rules, r.Name)
				reasons = append(reasons, fmt.Sprintf("%q allows every port of %s", r.Name, strings.Join(specStrings(r.Ports), ", ")))
			}
		}
		if g.p.Default == policy.DefaultAllow {
			reasons = append(reasons, "default allow lets external in on every port")
		}
		if len(reasons) == 0 {
			continue
		}
		ev := GapEvidence{Rules: rules, Reasons: reasons}
		sev := "high"
		if se := g.t.external[[2]string{s.Name, ""}]; se != nil {
			sev = "critical"
			ev.Flows, ev.Ports = se.flows, sortedKeys(se.ports)
		}
		g.add(KindExposedSensitive, sev, "", s.Name, fmt.Sprintf("sensitive segment %q is exposed: %s; restrict it to named internal peers and ports",
			s.Name, strings.Join(reasons, "; ")), ev, s.Name)
	}
}

func (g *gapper) hotspots(vs []query.ViolationEdge) {
	for _, v := range vs {
		if v.Hours < g.opt.HotspotHours {
			continue
		}
		pp := portProto(v.Port, v.Proto)
		var rules []string
		for _, r := range v.Rules {
			if r != "" {
				rules = append(rules, r)
			}
		}
		sev := "high"
		what := "a missing rule if the access is legitimate, or an attack to investigate"
		if len(rules) > 0 {
			what = "traffic the policy denies on purpose keeps coming: find its source"
		}
		g.add(KindViolationHotspot, sev, strings.Join(rules, ","), v.ServerSegment,
			fmt.Sprintf("violations from %s to %s on %s recur in %d hours (%s): %s",
				v.ClientSegment, v.ServerSegment, pp, v.Hours, count(int(v.Flows), "flow", "flows"), what),
			GapEvidence{Flows: v.Flows, Bytes: v.Bytes, Hours: v.Hours, Ports: []string{pp}, Rules: rules,
				FirstSeen: ts(v.FirstHour), LastSeen: ts(v.LastSeen), UsedPairs: []string{v.ClientSegment + " -> " + v.ServerSegment}},
			v.ClientSegment, v.ServerSegment, pp)
	}
}

func (g *gapper) envCrossing() {
	type cross struct {
		rules []string
		flows uint64
		ports map[string]bool
	}
	crosses := map[[2]string]*cross{}
	get := func(k [2]string) *cross {
		c := crosses[k]
		if c == nil {
			c = &cross{ports: map[string]bool{}}
			crosses[k] = c
		}
		return c
	}
	differ := func(a, b string) bool {
		ea, eb := env(g.tags[a]), env(g.tags[b])
		return ea != "" && eb != "" && ea != eb
	}
	for i := range g.p.Rules {
		r := &g.p.Rules[i]
		if r.Deny() || g.cov[i].shadowed {
			continue
		}
		for _, pr := range g.space.segPairs(i) {
			if differ(pr[0], pr[1]) {
				c := get(pr)
				c.rules = append(c.rules, r.Name)
			}
		}
	}
	for pr, se := range g.t.edges {
		if differ(pr[0], pr[1]) {
			c := get(pr)
			c.flows += se.flows
			for p := range se.ports {
				c.ports[p] = true
			}
		}
	}
	for pr, c := range crosses {
		envs := []string{"env:" + env(g.tags[pr[0]]), "env:" + env(g.tags[pr[1]])}
		var what []string
		if len(c.rules) > 0 {
			what = append(what, "allowed by "+quoteJoin(c.rules))
		}
		if c.flows > 0 {
			what = append(what, fmt.Sprintf("%s observed on %s", count(int(c.flows), "flow", "flows"), strings.Join(sortedKeys(c.ports), ", ")))
		}
		g.add(KindEnvCrossing, "high", strings.Join(c.rules, ","), pr[0], fmt.Sprintf("%s (%s) reaches %s (%s): %s; environments should not talk to each other",
			pr[0], envs[0], pr[1], envs[1], strings.Join(what, "; ")),
			GapEvidence{Envs: envs, Rules: c.rules, Flows: c.flows, Ports: sortedKeys(c.ports), UsedPairs: []string{pairString(pr)}},
			pr[0], pr[1])
	}
}

// lateral finds, per start (external or a low-trust segment) and
// sensitive target, the shortest path of two hops or more through allowed
// segment pairs: once through the rules, once through observed allowed
// traffic. The direct pair, if allowed, is not a hop of it (direct
// exposure of a sensitive segment is EXPOSED_SENSITIVE).
func (g *gapper) lateral() {
	policyGraph := map[string]map[string]*Hop{}
	for i := range g.p.Rules {
		r := &g.p.Rules[i]
		if r.Deny() || r.Staged() || g.cov[i].shadowed {
			continue
		}
		for _, pr := range g.space.segPairs(i) {
			if pr[0] == pr[1] {
				continue
			}
			if policyGraph[pr[0]] == nil {
				policyGraph[pr[0]] = map[string]*Hop{}
			}
			if policyGraph[pr[0]][pr[1]] == nil {
				policyGraph[pr[0]][pr[1]] = &Hop{From: pr[0], To: pr[1], Rule: r.Name, Ports: specStrings(r.Ports)}
			}
		}
	}
	obsGraph := map[string]map[string]*Hop{}
	for pr, se := range g.t.allowed {
		rule := ""
		var best uint64
		for _, name := range sortedKeys(boolKeys(se.rules)) {
			if se.rules[name] > best {
				rule, best = name, se.rules[name]
			}
		}
		if obsGraph[pr[0]] == nil {
			obsGraph[pr[0]] = map[string]*Hop{}
		}
		obsGraph[pr[0]][pr[1]] = &Hop{From: pr[0], To: pr[1], Rule: rule, Ports: sortedKeys(se.rulePorts[rule]), Flows: best}
	}
	starts := []string{policy.External}
	var targets []string
	for _, s := range g.p.Segments {
		if g.hasTag(s.Name, g.opt.LowTrustTags) {
			starts = append(starts, s.Name)
		}
		if g.sensitive(s.Name) {
			targets = append(targets, s.Name)
		}
	}
	for _, from := range starts {
		for _, to := range targets {
			if from == to {
				continue
			}
			pp := shortestPath(policyGraph, from, to)
			op := shortestPath(obsGraph, from, to)
			if len(pp) < 2 && len(op) < 2 {
				continue
			}
			if len(pp) < 2 {
				pp = nil
			}
			if len(op) < 2 {
				op = nil
			}
			sev := "high"
			var what []string
			switch {
			case pp != nil && op != nil && hopString(pp) == hopString(op):
				sev = "critical"
				what = append(what, "the rules allow and traffic took "+hopString(pp))
			default:
				if pp != nil {
					what = append(what, "the rules allow "+hopString(pp))
				}
				if op != nil {
					sev = "critical"
					what = append(what, "traffic took "+hopString(op))
				}
			}
			g.add(KindLateralPath, sev, "", to, fmt.Sprintf("%s can reach sensitive segment %q in several hops: %s; break a hop with a narrower rule",
				from, to, strings.Join(what, "; ")), GapEvidence{PolicyPath: pp, ObservedPath: op}, from, to)
		}
	}
}

func hopString(path []Hop) string {
	var b strings.Builder
	b.WriteString(path[0].From)
	for _, h := range path {
		fmt.Fprintf(&b, " -[%s]-> %s", h.Rule, h.To)
	}
	return b.String()
}

// shortestPath is a breadth-first search over graph for the shortest path
// of two hops or more (the direct pair is skipped), neighbours in name
// order so the path is deterministic; nil when there is none.
func shortestPath(graph map[string]map[string]*Hop, from, to string) []Hop {
	prev := map[string]*Hop{from: nil}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			break
		}
		for _, next := range sortedKeys(boolKeys(graph[cur])) {
			if cur == from && next == to {
				continue // the direct pair is not a lateral path
			}
			if _, seen := prev[next]; seen {
				continue
			}
			prev[next] = graph[cur][next]
			queue = append(queue, next)
		}
	}
	if _, ok := prev[to]; !ok || from == to {
		return nil
	}
	var path []Hop
	for cur := to; prev[cur] != nil; cur = prev[cur].From {
		path = append([]Hop{*prev[cur]}, path...)
	}
	return path
}

func (g *gapper) reviews(versions []query.AppliedPolicy) {
	// The first time each rule name was applied, by policy_versions.
	first := map[string]query.AppliedPolicy{}
	for _, v := range versions {
		vp, err := policy.Parse(v.Content, "policy_versions:"+v.Version)
		if err != nil {
			continue
		}
		for _, r := range vp.Rules {
			if _, ok := first[r.Name]; !ok {
				first[r.Name] = v
			}
		}
	}
	for i := range g.p.Rules {
		r := &g.p.Rules[i]
		if !r.Deny() && strings.TrimSpace(r.Justification) == "" {
			g.add(KindMissingJustification, "low", r.Name, "", fmt.Sprintf("allow rule %q has no justification; write down the business need for %s (PCI DSS 1.2.5)",
				r.Name, strings.Join(specStrings(r.Ports), ", ")), GapEvidence{Ports: specStrings(r.Ports), Rules: []string{r.Name}}, r.Name)
		}
		switch {
		case !r.ReviewBy.IsZero() && r.ReviewBy.Before(g.now):
			days := int(g.now.Sub(r.ReviewBy).Hours() / 24)
			g.add(KindOverdueReview, "medium", r.Name, "", fmt.Sprintf("rule %q was due for review on %s (%d days ago); review it and set a new review_by",
				r.Name, r.ReviewBy.Format(time.DateOnly), days), GapEvidence{ReviewBy: r.ReviewBy.Format(time.DateOnly), AgeDays: days}, r.Name)
		case r.ReviewBy.IsZero():
			v, ok := first[r.Name]
			if !ok || g.now.Sub(v.FirstLoaded) <= g.opt.ReviewAge {
				continue
			}
			days := int(g.now.Sub(v.FirstLoaded).Hours() / 24)
			g.add(KindOverdueReview, "medium", r.Name, "", fmt.Sprintf("rule %q has been applied since %s (%d days) with no review_by; review it (at least every six months) and set review_by",
				r.Name, v.FirstLoaded.Format(time.DateOnly), days),
				GapEvidence{FirstApplied: ts(v.FirstLoaded), Version: v.Version, AgeDays: days}, r.Name)
		}
	}
}

func (g *gapper) enforcement(ms []query.EnforcementMismatch) {
	for _, e := range ms {
		pp := portProto(e.Port, e.Proto)
		sev, msg := "critical", fmt.Sprintf("the device %s %s from %s to %s on %s that the policy denies; the enforcement point does not implement the policy",
			e.FwAction, count(int(e.Flows), "flow", "flows"), e.ClientSegment, e.ServerSegment, pp)
		if e.Verdict == policy.VerdictAllowed.String() {
			sev = "high"
			msg = fmt.Sprintf("the device %s %s from %s to %s on %s that the policy allows (rule %q); the enforcement point is stricter than the policy",
				e.FwAction, count(int(e.Flows), "flow", "flows"), e.ClientSegment, e.ServerSegment, pp, e.Rule)
		}
		g.add(KindEnforcementGap, sev, e.Rule, e.ServerSegment, msg,
			GapEvidence{Flows: e.Flows, Bytes: e.Bytes, Verdict: e.Verdict, FwAction: e.FwAction, Ports: []string{pp},
				FirstSeen: ts(e.FirstSeen), LastSeen: ts(e.LastSeen), Examples: e.Examples,
				UsedPairs: []string{e.ClientSegment + " -> " + e.ServerSegment}},
			e.ClientSegment, e.ServerSegment, pp, e.Verdict, e.FwAction)
	}
}

// WriteGapsJSON writes rep as indented JSON ("->" in messages and pairs
// left readable, not escaped as HTML).
func WriteGapsJSON(w io.Writer, rep *GapReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(rep)
}

// WriteGapsTable writes rep as a summary line and one row per finding.
func WriteGapsTable(w io.Writer, rep *GapReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var counts []string
	for i := len(Severities) - 1; i >= 0; i-- {
		counts = append(counts, fmt.Sprintf("%d %s", rep.Summary[Severities[i]], Severities[i]))
	}
	fmt.Fprintf(tw, "Findings (window %s to %s): %d (%s)\n", ts(rep.From), ts(rep.To), len(rep.Findings), strings.Join(counts, ", "))
	fmt.Fprintln(tw, "SEVERITY\tID\tRULE\tSEGMENT\tMESSAGE")
	for _, f := range rep.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Severity, f.ID, dash(f.Rule), dash(f.Segment), f.Message)
	}
	return tw.Flush()
}
