package audit

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/schemas"
)

// Granularities of a recommendation.
const (
	GranularitySegment  = "segment"  // one rule per segment pair
	GranularityWorkload = "workload" // ends are inventory workloads where known
)

// Statuses of a recommended rule.
const (
	StatusLearning = "learning" // too little history, or a port appeared recently
	StatusStable   = "stable"   // every port seen for at least StableFor, over MinHistory
)

// DefaultHoldKinds are the alert kinds whose edges a recommendation holds
// for review instead of allowing: attacks and anomalies. policy_violation
// is not one of them: violations are what a recommendation exists to fix.
var DefaultHoldKinds = []string{
	"address_scan", "port_scan", "auth_bruteforce", "lateral_chain", "volume_spike",
	"unattributed_access", "new_edge", "segmentation_breach",
}

// RecommendOptions configures Recommend. DefaultRecommendOptions gives the
// documented defaults.
type RecommendOptions struct {
	Window      query.Window
	Granularity string
	// IdentityShare is the share of an edge's flows one identity must carry
	// for the rule to be scoped to that identity (0.95).
	IdentityShare float64
	// GeneralizePorts is the number of distinct ports of one protocol on
	// one edge from which the rule names their range instead (16).
	GeneralizePorts int
	// MinHistory is the observed history below which every rule is
	// learning (7 days); StableFor is how long every port of a rule must
	// have been seen for it to be stable (3 days).
	MinHistory, StableFor time.Duration
	// HoldSlack widens an alert's activity interval when matching edges to
	// it (1 minute): flow records are dated by their start, alerts by the
	// events the detector saw.
	HoldSlack time.Duration
	// TopN bounds the evidence lists (top sources, identities): 5.
	TopN int
}

// DefaultRecommendOptions returns the defaults for window w.
func DefaultRecommendOptions(w query.Window) RecommendOptions {
	return RecommendOptions{
		Window: w, Granularity: GranularitySegment, IdentityShare: 0.95, GeneralizePorts: 16,
		MinHistory: 7 * 24 * time.Hour, StableFor: 3 * 24 * time.Hour, HoldSlack: time.Minute, TopN: 5,
	}
}

// Recommendation is the result of Recommend.
type Recommendation struct {
	From        time.Time         `json:"window_from"`
	To          time.Time         `json:"window_to"`
	Granularity string            `json:"granularity"`
	Rules       []RecommendedRule `json:"rules"`
	Held        []HeldEdge        `json:"held"`
	// Skipped counts flows a rule cannot name (protocols other than TCP,
	// UDP, ICMP and ICMPv6).
	Skipped uint64 `json:"skipped_flows"`
}

// RecommendedRule is one allow rule and the traffic it is drawn from.
// From and To are segment names; at workload granularity FromWorkload and
// ToWorkload narrow an end to an inventory workload ("" for the whole
// segment).
type RecommendedRule struct {
	Name         string   `json:"name"`
	From         []string `json:"from"`
	To           []string `json:"to"`
	FromWorkload string   `json:"from_workload,omitempty"`
	ToWorkload   string   `json:"to_workload,omitempty"`
	Ports        []string `json:"ports"`
	Identities   []string `json:"identities"`
	Status       string   `json:"status"`
	// Generalized is set when a port range stands for many distinct
	// observed ports (see RecommendOptions.GeneralizePorts).
	Generalized bool     `json:"generalized"`
	Evidence    Evidence `json:"evidence"`
}

// Evidence is the observed traffic behind a rule or a held edge.
type Evidence struct {
	Flows     uint64    `json:"flows"`
	Bytes     uint64    `json:"bytes"`
	Replies   uint64    `json:"replies"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Ports are the observed service ports ("5432/tcp") with their flows.
	Ports []Count `json:"ports"`
	// TopSources are the client addresses with the most flows.
	TopSources []Count `json:"top_sources"`
	// Identities are the client identities with the most flows ("" for
	// flows without one).
	Identities []Count `json:"identities"`
	// Uncovered is how many of Flows the rule would not allow because it
	// is scoped to an identity they do not carry.
	Uncovered uint64 `json:"uncovered_flows"`
}

// HeldEdge is traffic behind an alert: listed for review, never turned
// into a rule on its own. CoveredBy names the recommended rule that allows
// it anyway (drawn from other, unalerted traffic on the same edge), "" when
// none does.
type HeldEdge struct {
	From       string    `json:"from"`
	To         string    `json:"to"`
	Port       string    `json:"port"`
	Alerts     []string  `json:"alerts"`
	Kinds      []string  `json:"kinds"`
	Sources    []string  `json:"sources"`
	Targets    []string  `json:"targets"`
	Identities []string  `json:"identities"`
	Flows      uint64    `json:"flows"`
	Bytes      uint64    `json:"bytes"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	CoveredBy  string    `json:"covered_by"`
}

type end struct{ seg, workload string }

// portAgg is the traffic of one edge on one service (protocol and port).
type portAgg struct {
	proto               uint8
	port                uint16
	flows, bytes, reply uint64
	first, last         time.Time
	identities, sources counter
}

type edgeAgg struct {
	from, to end
	ports    map[[2]uint16]*portAgg // (proto, port)
}

func (a *edgeAgg) add(e *query.ServiceEdge, ident string) {
	k := [2]uint16{uint16(e.Proto), e.Port}
	pa := a.ports[k]
	if pa == nil {
		pa = &portAgg{proto: e.Proto, port: e.Port, identities: counter{}, sources: counter{}}
		a.ports[k] = pa
	}
	pa.flows += e.Flows
	pa.bytes += e.Bytes
	pa.reply += e.Replies
	pa.first = minTime(pa.first, e.FirstSeen)
	pa.last = maxTime(pa.last, e.LastSeen)
	pa.identities.add(ident, e.Flows)
	pa.sources.add(e.Client.String(), e.Flows)
}

type heldAgg struct {
	h                     HeldEdge
	sources, targets, ids map[string]bool
}

// Recommend computes the least-privilege allow rules covering every service
// edge of edges that crosses a boundary under m (a segment boundary; at
// workload granularity also a workload boundary inside a segment), with
// addresses labelled by m's segments and inventory. Edges behind one of
// alerts are held instead. Rules are sorted by from, to, identities, then
// ports; held edges by from, to, port, alerts.
func Recommend(edges []query.ServiceEdge, alerts []query.Alert, m *policy.Matcher, opt RecommendOptions) *Recommendation {
	if opt.TopN <= 0 {
		opt.TopN = 5
	}
	if opt.Granularity == "" {
		opt.Granularity = GranularitySegment
	}
	rec := &Recommendation{From: opt.Window.From.UTC(), To: opt.Window.To.UTC(), Granularity: opt.Granularity,
		Rules: []RecommendedRule{}, Held: []HeldEdge{}}
	aggs := map[[2]end]*edgeAgg{}
	held := map[string]*heldAgg{}
	var historyStart time.Time
	for i := range edges {
		e := &edges[i]
		historyStart = minTime(historyStart, e.FirstSeen)
		c, s := m.Lookup(addr(e.Client)), m.Lookup(addr(e.Server))
		from, to := end{seg: c.Segment}, end{seg: s.Segment}
		if opt.Granularity == GranularityWorkload {
			from.workload, to.workload = c.Workload, s.Workload
			if from == to || (c.Segment == s.Segment && (c.Workload == "" || s.Workload == "")) {
				continue
			}
		} else if c.Segment == s.Segment {
			continue
		}
		name, hasPorts, ok := protoSpec(e.Proto)
		if !ok {
			rec.Skipped += e.Flows
			continue
		}
		port := name
		if hasPorts {
			port = fmt.Sprintf("%d/%s", e.Port, name)
		}
		ident := e.ClientIdentity
		if ident == "" {
			ident = c.ServiceAccount
		}
		if ids := holdingAlerts(e, c.Segment, s.Segment, alerts, opt.HoldSlack); len(ids) > 0 {
			var kinds []string
			seenKind := map[string]bool{}
			var idList []string
			for _, a := range ids {
				idList = append(idList, a.ID)
				if !seenKind[a.Kind] {
					seenKind[a.Kind] = true
					kinds = append(kinds, a.Kind)
				}
			}
			sort.Strings(kinds)
			key := strings.Join([]string{from.String(), to.String(), port, strings.Join(idList, ",")}, "|")
			h := held[key]
			if h == nil {
				h = &heldAgg{h: HeldEdge{From: from.String(), To: to.String(), Port: port, Alerts: idList, Kinds: kinds},
					sources: map[string]bool{}, targets: map[string]bool{}, ids: map[string]bool{}}
				held[key] = h
			}
			h.h.Flows += e.Flows
			h.h.Bytes += e.Bytes
			h.h.FirstSeen = minTime(h.h.FirstSeen, e.FirstSeen)
			h.h.LastSeen = maxTime(h.h.LastSeen, e.LastSeen)
			h.sources[e.Client.String()] = true
			h.targets[e.Server.String()] = true
			if ident != "" {
				h.ids[ident] = true
			}
			continue
		}
		k := [2]end{from, to}
		a := aggs[k]
		if a == nil {
			a = &edgeAgg{from: from, to: to, ports: map[[2]uint16]*portAgg{}}
			aggs[k] = a
		}
		a.add(e, ident)
	}

	learning := historyStart.IsZero() || opt.Window.To.Sub(historyStart) < opt.MinHistory
	var rules []RecommendedRule
	for _, a := range aggs {
		rules = append(rules, a.rules(opt, learning)...)
	}
	if opt.Granularity == GranularitySegment {
		rules = mergeRules(rules, opt.TopN)
	}
	sortRules(rules)
	nameRules(rules)
	for i := range rules {
		trimEvidence(&rules[i].Evidence, opt.TopN)
	}
	rec.Rules = rules

	for _, h := range held {
		h.h.Sources, h.h.Targets, h.h.Identities = sortedKeys(h.sources), sortedKeys(h.targets), sortedKeys(h.ids)
		rec.Held = append(rec.Held, h.h)
	}
	sort.Slice(rec.Held, func(i, j int) bool {
		a, b := &rec.Held[i], &rec.Held[j]
		if a.From != b.From {
			return a.From < b.From
		}
		if a.To != b.To {
			return a.To < b.To
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return strings.Join(a.Alerts, ",") < strings.Join(b.Alerts, ",")
	})
	coverHeld(rec, m)
	return rec
}

func (e end) String() string {
	if e.workload == "" {
		return e.seg
	}
	return e.seg + "/" + e.workload
}

// rules turns one edge's aggregate into rules (before merging): each
// service port is scoped to the identity carrying at least IdentityShare
// of its flows, if one does, and the ports of one scope make one rule.
func (a *edgeAgg) rules(opt RecommendOptions, learning bool) []RecommendedRule {
	byScope := map[string][]*portAgg{}
	uncovered := map[string]uint64{}
	for _, pa := range a.ports {
		scope := ""
		if top := pa.identities.top(1); len(top) == 1 && top[0].Value != "" &&
			float64(top[0].Flows) >= opt.IdentityShare*float64(pa.flows) {
			scope = top[0].Value
			uncovered[scope] += pa.flows - top[0].Flows
		}
		byScope[scope] = append(byScope[scope], pa)
	}
	var out []RecommendedRule
	for scope, ports := range byScope {
		r := RecommendedRule{From: []string{a.from.seg}, To: []string{a.to.seg},
			FromWorkload: a.from.workload, ToWorkload: a.to.workload, Identities: []string{}}
		if scope != "" {
			r.Identities = []string{scope}
		}
		r.Evidence.Uncovered = uncovered[scope]
		sort.Slice(ports, func(i, j int) bool {
			if oi, oj := protoOrder(ports[i].proto), protoOrder(ports[j].proto); oi != oj {
				return oi < oj
			}
			return ports[i].port < ports[j].port
		})
		stable := !learning
		portCounts, idents, sources := counter{}, counter{}, counter{}
		for i := 0; i < len(ports); {
			proto := ports[i].proto
			j := i
			for j < len(ports) && ports[j].proto == proto {
				j++
			}
			name, hasPorts, _ := protoSpec(proto)
			same := ports[i:j]
			switch {
			case !hasPorts:
				r.Ports = append(r.Ports, name)
			case opt.GeneralizePorts > 0 && len(same) >= opt.GeneralizePorts:
				r.Ports = append(r.Ports, fmt.Sprintf("%d-%d/%s", same[0].port, same[len(same)-1].port, name))
				r.Generalized = true
			default:
				for _, pa := range same {
					r.Ports = append(r.Ports, fmt.Sprintf("%d/%s", pa.port, name))
				}
			}
			for _, pa := range same {
				if opt.Window.To.Sub(pa.first) < opt.StableFor {
					stable = false
				}
				label := name
				if hasPorts {
					label = fmt.Sprintf("%d/%s", pa.port, name)
				}
				portCounts.add(label, pa.flows)
				ev := &r.Evidence
				ev.Flows += pa.flows
				ev.Bytes += pa.bytes
				ev.Replies += pa.reply
				ev.FirstSeen = minTime(ev.FirstSeen, pa.first)
				ev.LastSeen = maxTime(ev.LastSeen, pa.last)
				for v, n := range pa.identities {
					idents.add(v, n)
				}
				for v, n := range pa.sources {
					sources.add(v, n)
				}
			}
			i = j
		}
		r.Status = StatusLearning
		if stable {
			r.Status = StatusStable
		}
		r.Evidence.Ports = portCounts.top(0)
		r.Evidence.TopSources = sources.top(0)
		r.Evidence.Identities = idents.top(0)
		out = append(out, r)
	}
	return out
}

// protoOrder lists protocols with ports first: tcp, udp, then icmp, icmpv6.
func protoOrder(proto uint8) int {
	switch proto {
	case policy.ProtoTCP:
		return 0
	case policy.ProtoUDP:
		return 1
	case policy.ProtoICMP:
		return 2
	case policy.ProtoICMPv6:
		return 3
	}
	return 4 + int(proto)
}

// holdingAlerts returns the alerts e is behind: an alert narrowed to a
// source address (and, where set, destination address, segment, port and
// protocol) holds the edges of that client it describes while it was
// active (narrowed to the source only: the edges that first appeared then); a
// lateral chain also holds every hop of its evidence; an alert on a whole
// segment pair (volume_spike) holds the pair's edges that first appeared
// while it was active.
func holdingAlerts(e *query.ServiceEdge, fromSeg, toSeg string, alerts []query.Alert, slack time.Duration) []query.Alert {
	var out []query.Alert
	for i := range alerts {
		a := &alerts[i]
		active := !e.FirstSeen.After(a.LastSeen.Add(slack)) && !e.LastSeen.Before(a.FirstSeen.Add(-slack))
		if !active {
			continue
		}
		if alertMatches(a, e, fromSeg, toSeg, slack) {
			out = append(out, *a)
		}
	}
	return out
}

func alertMatches(a *query.Alert, e *query.ServiceEdge, fromSeg, toSeg string, slack time.Duration) bool {
	if a.Kind == "lateral_chain" {
		for _, h := range chainHops(a.Evidence) {
			if h.src == e.Client && h.dst == e.Server && (h.port == 0 || h.port == e.Port) {
				return true
			}
		}
	}
	if !a.SrcAddr.IsValid() {
		// A finding on a segment pair: hold what only appeared with it.
		return a.SrcIdentity == "" && a.SrcSegment == fromSeg && a.DstSegment == toSeg &&
			!e.FirstSeen.Before(a.FirstSeen.Add(-slack)) && !e.FirstSeen.After(a.LastSeen.Add(slack))
	}
	if a.SrcAddr != e.Client {
		return false
	}
	if !a.DstAddr.IsValid() && a.DstPort == 0 && a.DstSegment == "" {
		// Narrowed to a source only (a brute-forcing address): hold what
		// that source only started while the alert was active, not the
		// rest of what it does.
		return !e.FirstSeen.Before(a.FirstSeen.Add(-slack)) && !e.FirstSeen.After(a.LastSeen.Add(slack))
	}
	if a.DstAddr.IsValid() && a.DstAddr != e.Server {
		return false
	}
	if a.DstSegment != "" && a.DstSegment != toSeg {
		return false
	}
	if a.DstPort != 0 && e.Proto != policy.ProtoICMP && e.Proto != policy.ProtoICMPv6 && a.DstPort != e.Port {
		return false
	}
	return a.Proto == 0 || a.Proto == e.Proto
}

type hop struct {
	src, dst netip.Addr
	port     uint16
}

// chainHops reads the hops of a lateral_chain alert's evidence.
func chainHops(evidence string) []hop {
	var ev struct {
		Hops []struct {
			Src, Dst, Port string
		} `json:"hops"`
	}
	if json.Unmarshal([]byte(evidence), &ev) != nil {
		return nil
	}
	var out []hop
	for _, h := range ev.Hops {
		s, err1 := netip.ParseAddr(h.Src)
		d, err2 := netip.ParseAddr(h.Dst)
		if err1 != nil || err2 != nil {
			continue
		}
		var port uint16
		fmt.Sscanf(h.Port, "%d", &port)
		out = append(out, hop{src: s.Unmap(), dst: d.Unmap(), port: port})
	}
	return out
}

// mergeRules joins rules that differ in one end only: same to, ports,
// identities, status and workloads give one rule from the union of their
// sources; then the same for destinations. Every (from, to) combination of
// a merged rule was observed, so merging never widens what is allowed.
func mergeRules(rules []RecommendedRule, topN int) []RecommendedRule {
	for _, byFrom := range []bool{true, false} {
		groups := map[string][]int{}
		var order []string
		for i, r := range rules {
			other := r.To
			if !byFrom {
				other = r.From
			}
			k := strings.Join([]string{strings.Join(other, ","), strings.Join(r.Ports, ","), strings.Join(r.Identities, ","),
				r.Status, r.FromWorkload, r.ToWorkload, fmt.Sprint(r.Generalized)}, "|")
			if _, ok := groups[k]; !ok {
				order = append(order, k)
			}
			groups[k] = append(groups[k], i)
		}
		sort.Strings(order)
		var out []RecommendedRule
		for _, k := range order {
			idx := groups[k]
			m := rules[idx[0]]
			ends := map[string]bool{}
			for _, i := range idx {
				r := rules[i]
				list := r.From
				if !byFrom {
					list = r.To
				}
				for _, s := range list {
					ends[s] = true
				}
				if i != idx[0] {
					m.Evidence = mergeEvidence(m.Evidence, r.Evidence)
				}
			}
			if byFrom {
				m.From = sortedKeys(ends)
			} else {
				m.To = sortedKeys(ends)
			}
			out = append(out, m)
		}
		rules = out
	}
	return rules
}

func mergeEvidence(a, b Evidence) Evidence {
	out := Evidence{
		Flows: a.Flows + b.Flows, Bytes: a.Bytes + b.Bytes, Replies: a.Replies + b.Replies,
		FirstSeen: minTime(a.FirstSeen, b.FirstSeen), LastSeen: maxTime(a.LastSeen, b.LastSeen),
		Uncovered: a.Uncovered + b.Uncovered,
	}
	merge := func(x, y []Count) []Count {
		c := counter{}
		for _, l := range [][]Count{x, y} {
			for _, v := range l {
				c.add(v.Value, v.Flows)
			}
		}
		return c.top(0)
	}
	out.Ports, out.TopSources, out.Identities = merge(a.Ports, b.Ports), merge(a.TopSources, b.TopSources), merge(a.Identities, b.Identities)
	return out
}

func trimEvidence(ev *Evidence, n int) {
	if len(ev.TopSources) > n {
		ev.TopSources = ev.TopSources[:n]
	}
	if len(ev.Identities) > n {
		ev.Identities = ev.Identities[:n]
	}
}

func ruleKey(r *RecommendedRule) string {
	return strings.Join([]string{strings.Join(r.From, ","), r.FromWorkload, strings.Join(r.To, ","), r.ToWorkload,
		strings.Join(r.Identities, ","), strings.Join(r.Ports, ",")}, "|")
}

func sortRules(rules []RecommendedRule) {
	sort.Slice(rules, func(i, j int) bool { return ruleKey(&rules[i]) < ruleKey(&rules[j]) })
}

// nameRules names each rule after its ends (and identity), e.g.
// "app-to-db" or "web+app-to-dns-as-svc-web", numbering repeats.
func nameRules(rules []RecommendedRule) {
	used := map[string]int{}
	for i := range rules {
		r := &rules[i]
		from, to := strings.Join(r.From, "+"), strings.Join(r.To, "+")
		if r.FromWorkload != "" {
			from += "." + r.FromWorkload
		}
		if r.ToWorkload != "" {
			to += "." + r.ToWorkload
		}
		name := from + "-to-" + to
		if len(r.Identities) > 0 {
			name += "-as-" + strings.Join(r.Identities, "+")
		}
		name = sanitizeName(name)
		used[name]++
		if n := used[name]; n > 1 {
			name = fmt.Sprintf("%s-%d", name, n)
		}
		r.Name = name
	}
}

func sanitizeName(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '+':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// coverHeld names, for each held edge, the recommended rule that would
// allow its traffic anyway, by deciding one representative flow under the
// recommended policy with the same Matcher code the enricher uses.
func coverHeld(rec *Recommendation, base *policy.Matcher) {
	if len(rec.Held) == 0 || rec.Granularity != GranularitySegment {
		return
	}
	m, err := policy.Compile(RecommendedPolicy(base.Policy(), rec))
	if err != nil {
		return
	}
	for i := range rec.Held {
		h := &rec.Held[i]
		spec, err := policy.ParsePortSpec(h.Port)
		if err != nil || len(h.Sources) == 0 || len(h.Targets) == 0 {
			continue
		}
		ident := ""
		if len(h.Identities) > 0 {
			ident = h.Identities[0]
		}
		src, _ := netip.ParseAddr(h.Sources[0])
		dst, _ := netip.ParseAddr(h.Targets[0])
		k := policy.FlowKey{Src: m.Lookup(addr(src)), Dst: m.Lookup(addr(dst)), SrcPort: 50000, DstPort: spec.Lo,
			Proto: spec.Proto, SrcIdentity: ident, ServiceSide: schemas.ServiceDst}
		if v, rule := m.Decide(&k); v == policy.VerdictAllowed {
			h.CoveredBy = rule
		}
	}
}

// RecommendedPolicy is base with its rules replaced by rec's (segment
// granularity): the same segments, inventory and default, so the result
// is a complete policy file for `audit simulate` and `policy validate`.
func RecommendedPolicy(base *policy.Policy, rec *Recommendation) *policy.Policy {
	p := &policy.Policy{Segments: base.Segments, Inventory: base.Inventory, Default: policy.DefaultDeny}
	for _, r := range rec.Rules {
		if r.FromWorkload != "" || r.ToWorkload != "" {
			continue
		}
		pr := policy.Rule{Name: r.Name, From: r.From, To: r.To, Identities: r.Identities}
		for _, s := range r.Ports {
			if ps, err := policy.ParsePortSpec(s); err == nil {
				pr.Ports = append(pr.Ports, ps)
			}
		}
		p.Rules = append(p.Rules, pr)
	}
	return p
}
