package report

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

// builder computes every check once; controls pick the checks they need.
type builder struct {
	in       Inputs
	cde      map[string]bool
	cdeList  []string
	summary  Summary
	dataFlow DataFlow
	tables   []Table
	hits     map[string]ruleHit
}

type ruleHit struct {
	flows uint64
	last  time.Time
}

func newBuilder(in Inputs) *builder {
	b := &builder{in: in, cde: map[string]bool{}, hits: map[string]ruleHit{}}
	for _, s := range in.Policy.Policy().Segments {
		for _, t := range s.Tags {
			for _, c := range CDETags {
				if strings.EqualFold(t, c) {
					b.cde[s.Name] = true
				}
			}
		}
	}
	for s := range b.cde {
		b.cdeList = append(b.cdeList, s)
	}
	sort.Strings(b.cdeList)
	for _, s := range in.Services {
		if s.Rule == "" {
			continue
		}
		h := b.hits[s.Rule]
		h.flows += s.Flows
		if s.LastSeen.After(h.last) {
			h.last = s.LastSeen
		}
		b.hits[s.Rule] = h
	}
	return b
}

func (b *builder) table(name string, header []string, rows [][]string) string {
	b.tables = append(b.tables, Table{Name: name, Header: header, Rows: rows})
	return "evidence/" + name
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func day(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02")
}

// ProtoName is the protocol's name for people: tcp, udp, icmp… or its number.
func ProtoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

func service(port uint16, proto uint8) string {
	if proto == 1 || proto == 58 {
		return ProtoName(proto)
	}
	return fmt.Sprintf("%d/%s", port, ProtoName(proto))
}

func limit(lines []string) []string {
	if lines == nil {
		return []string{}
	}
	if len(lines) > maxFindings {
		n := len(lines) - maxFindings
		lines = append(lines[:maxFindings:maxFindings], fmt.Sprintf("… and %d more (see the evidence file)", n))
	}
	return lines
}

func (b *builder) checks() map[string]Check {
	out := map[string]Check{}
	for _, c := range []Check{
		b.dataFlowCheck(), b.servicesCheck(), b.ruleReviewCheck(), b.cdeTrafficCheck(), b.untrustedCheck(),
		b.identitiesCheck(), b.loggingCheck(), b.alertsCheck(), b.retentionCheck(), b.segTestsCheck(),
	} {
		if c.Findings == nil {
			c.Findings = []string{}
		}
		if c.Numbers == nil {
			c.Numbers = map[string]uint64{}
		}
		out[c.Check] = c
	}
	return out
}

// dataFlowCheck draws the diagram from the observed segment edges.
func (b *builder) dataFlowCheck() Check {
	type key struct{ c, s string }
	edges := map[key]*Edge{}
	nodes := map[string]bool{}
	for _, s := range b.in.Policy.Policy().Segments {
		nodes[s.Name] = true
	}
	var flows, intra uint64
	for _, r := range b.in.Services {
		flows += r.Flows
		if r.Verdict == "violation" {
			b.summary.Violations += r.Flows
		}
		if r.Client == r.Server {
			intra += r.Flows
			continue
		}
		k := key{r.Client, r.Server}
		e := edges[k]
		if e == nil {
			e = &Edge{Client: r.Client, Server: r.Server, CDE: b.cde[r.Client] || b.cde[r.Server]}
			edges[k] = e
		}
		e.Flows += r.Flows
		e.Bytes += r.Bytes
		if r.Verdict == "violation" {
			e.Violations += r.Flows
		}
		nodes[r.Client], nodes[r.Server] = true, true
	}
	b.summary.Flows = flows
	var names []string
	for n := range nodes {
		if n != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		b.dataFlow.Nodes = append(b.dataFlow.Nodes, Node{Segment: n, CDE: b.cde[n], External: n == policy.External})
	}
	var rows [][]string
	var cdeEdges uint64
	for _, e := range edges {
		b.dataFlow.Edges = append(b.dataFlow.Edges, *e)
	}
	sort.Slice(b.dataFlow.Edges, func(i, j int) bool {
		a, c := b.dataFlow.Edges[i], b.dataFlow.Edges[j]
		if a.Client != c.Client {
			return a.Client < c.Client
		}
		return a.Server < c.Server
	})
	for _, e := range b.dataFlow.Edges {
		if e.CDE {
			cdeEdges++
		}
		rows = append(rows, []string{e.Client, e.Server, u(e.Flows), u(e.Bytes), u(e.Violations), strconv.FormatBool(e.CDE)})
	}
	if b.dataFlow.Nodes == nil {
		b.dataFlow.Nodes = []Node{}
	}
	if b.dataFlow.Edges == nil {
		b.dataFlow.Edges = []Edge{}
	}
	ev := b.table("segment_edges.csv", []string{"client_segment", "server_segment", "flows", "bytes", "violations", "cde"}, rows)
	c := Check{
		Check: checkDataFlow, Title: "Data-flow diagram from observed traffic",
		Checked: "Every flow of the window, labelled with the segments of the policy, drawn as segment-to-segment edges " +
			"(client segment to the segment offering the service); segments tagged " + strings.Join(CDETags, " or ") + " are the CDE.",
		Numbers: map[string]uint64{"segments": uint64(len(b.dataFlow.Nodes)), "edges": uint64(len(b.dataFlow.Edges)),
			"cde_edges": cdeEdges, "flows": flows, "intra_segment_flows": intra},
		Evidence: []string{ev},
	}
	switch {
	case len(b.cde) == 0:
		c.Result, c.Reason = NotAssessable, "no segment of the policy is tagged "+strings.Join(CDETags, " or ")+": the CDE cannot be drawn"
	case flows == 0:
		c.Result, c.Reason = NotAssessable, "no flows were recorded in the window"
	default:
		c.Result, c.Reason = Met, fmt.Sprintf("the diagram shows %d observed edges between %d segments, %d of them touching the CDE (%s); it is current as of the end of the window",
			len(b.dataFlow.Edges), len(b.dataFlow.Nodes), cdeEdges, strings.Join(b.cdeList, ", "))
	}
	return c
}

func portsText(r policy.Rule) string {
	var s []string
	for _, p := range r.Ports {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

func ends(names []string, sel []policy.Selector) string {
	out := append([]string{}, names...)
	for _, s := range sel {
		out = append(out, s.String())
	}
	return strings.Join(out, " ")
}

// broad reports why a rule is overly broad ("" when it is not): any
// protocol, every port of a protocol, or a range of more than 1024 ports.
func broad(r policy.Rule) string {
	for _, p := range r.Ports {
		if p.Proto == policy.ProtoICMP || p.Proto == policy.ProtoICMPv6 {
			continue
		}
		switch {
		case p.Proto == policy.ProtoAny:
			return "any protocol and port"
		case p.Lo == 0 && p.Hi == 65535:
			return "every " + ProtoName(p.Proto) + " port"
		case int(p.Hi)-int(p.Lo) >= 1024:
			return fmt.Sprintf("%d ports (%s)", int(p.Hi)-int(p.Lo)+1, p.String())
		}
	}
	return ""
}

func action(r policy.Rule) string {
	if r.Action == "" {
		return policy.ActionAllow
	}
	return r.Action
}

func (b *builder) rulesTable() string {
	var rows [][]string
	for _, r := range b.in.Policy.Policy().Rules {
		h := b.hits[r.Name]
		mode := r.Mode
		if mode == "" {
			mode = "enforced"
		}
		rows = append(rows, []string{r.Name, action(r), mode, ends(r.From, r.FromSelectors), ends(r.To, r.ToSelectors), portsText(r),
			strings.Join(r.Identities, " "), r.Owner, r.Justification, day(r.ReviewBy), u(h.flows), ts(h.last), broad(r), strconv.Itoa(r.Line)})
	}
	return b.table("rules.csv", []string{"rule", "action", "mode", "from", "to", "ports", "identities", "owner", "justification",
		"review_by", "hits", "last_hit", "broad", "line"}, rows)
}

func (b *builder) servicesCheck() Check {
	ev := b.rulesTable()
	var allow, noOwner, noJust uint64
	var find []string
	for _, r := range b.in.Policy.Policy().Rules {
		if action(r) != policy.ActionAllow {
			continue
		}
		allow++
		var miss []string
		if strings.TrimSpace(r.Owner) == "" {
			noOwner++
			miss = append(miss, "owner")
		}
		if strings.TrimSpace(r.Justification) == "" {
			noJust++
			miss = append(miss, "justification")
		}
		if len(miss) > 0 {
			find = append(find, fmt.Sprintf("rule %s (%s -> %s %s, line %d) has no %s", r.Name, ends(r.From, r.FromSelectors),
				ends(r.To, r.ToSelectors), portsText(r), r.Line, strings.Join(miss, " and no ")))
		}
	}
	c := Check{
		Check: checkServices, Title: "Allowed services, protocols and ports with owner and justification",
		Checked:  "Every allow rule of the policy: its ends, ports and protocols, and whether it names an owner and a business justification.",
		Numbers:  map[string]uint64{"allow_rules": allow, "missing_owner": noOwner, "missing_justification": noJust},
		Findings: limit(find), Evidence: []string{ev},
	}
	switch {
	case allow == 0:
		c.Result, c.Reason = NotAssessable, "the policy has no allow rules"
	case len(find) > 0:
		c.Result, c.Reason = Findings, fmt.Sprintf("%d of %d allow rules lack an owner or a justification", len(find), allow)
	default:
		c.Result, c.Reason = Met, fmt.Sprintf("all %d allow rules name an owner and a justification", allow)
	}
	return c
}

func (b *builder) ruleReviewCheck() Check {
	now := b.in.GeneratedAt
	var unused, overdue, noDate, broadN uint64
	var find []string
	for _, r := range b.in.Policy.Policy().Rules {
		if b.hits[r.Name].flows == 0 {
			unused++
			find = append(find, fmt.Sprintf("rule %s decided no flow in the window (unused)", r.Name))
		}
		switch {
		case r.ReviewBy.IsZero():
			noDate++
			find = append(find, fmt.Sprintf("rule %s has no review_by date", r.Name))
		case r.ReviewBy.Before(now):
			overdue++
			find = append(find, fmt.Sprintf("rule %s: review was due %s (overdue)", r.Name, day(r.ReviewBy)))
		}
		if why := broad(r); why != "" {
			broadN++
			find = append(find, fmt.Sprintf("rule %s is broad: %s", r.Name, why))
		}
	}
	b.summary.UnusedRules = unused
	evidence := []string{"evidence/rules.csv"}
	gapNums := map[string]uint64{}
	if g := b.in.Gaps; g != nil {
		// The audit layer's gap analysis adds what the policy alone shows:
		// rules shadowed by earlier ones, redundant rules, broad peers.
		var grows [][]string
		kinds := map[string]uint64{}
		for _, f := range g.Findings {
			grows = append(grows, []string{f.ID, f.Kind, f.Severity, f.Rule, f.Segment, f.Message})
			kinds[f.Kind]++
			switch f.Kind {
			case audit.KindShadowedRule, audit.KindRedundantRule, audit.KindBroadPeers, audit.KindBroadPorts:
				find = append(find, fmt.Sprintf("%s (audit gaps %s): %s", f.Kind, f.ID, f.Message))
			}
		}
		for _, k := range []string{audit.KindShadowedRule, audit.KindRedundantRule, audit.KindBroadPorts, audit.KindBroadPeers} {
			gapNums["gaps_"+strings.ToLower(k)] = kinds[k]
		}
		evidence = append(evidence, b.table("gaps.csv", []string{"id", "kind", "severity", "rule", "segment", "message"}, grows))
	}
	var rows [][]string
	var last time.Time
	var changes uint64
	for _, v := range b.in.PolicyVersions {
		if v.LoadedAt.After(last) {
			last = v.LoadedAt
		}
		if !v.LoadedAt.Before(b.in.Window.From) && v.LoadedAt.Before(b.in.Window.To) {
			changes++
		}
		rows = append(rows, []string{v.Version, ts(v.LoadedAt), v.Path, v.Host, v.Summary})
	}
	ev := b.table("policy_versions.csv", []string{"version", "loaded_at", "path", "host", "summary"}, rows)
	nums := map[string]uint64{"rules": uint64(len(b.in.Policy.Policy().Rules)), "unused_rules": unused, "overdue_reviews": overdue,
		"missing_review_date": noDate, "broad_rules": broadN, "policy_versions_in_window": changes}
	for k, v := range gapNums {
		nums[k] = v
	}
	lastText := "no policy version is recorded in policy_versions"
	if !last.IsZero() {
		lastText = "the policy last changed (was applied) at " + ts(last)
		nums["days_since_policy_change"] = uint64(now.Sub(last) / (24 * time.Hour))
	}
	c := Check{
		Check: checkRuleReview, Title: "Rule review status",
		Checked: "Each rule's review_by date against the report date (six-monthly reviews), its hits in the window (rule_hits_1h / flows: " +
			"a rule no flow matched is unused), overly broad port ranges, and the policy versions the enrichers applied.",
		Numbers: nums, Findings: limit(find), Evidence: append(evidence, ev),
	}
	if len(find) > 0 {
		c.Result = Findings
		c.Reason = fmt.Sprintf("%d unused, %d overdue, %d without a review date and %d broad rules", unused, overdue, noDate, broadN)
		if b.in.Gaps != nil {
			c.Reason += fmt.Sprintf(", %d shadowed and %d redundant (audit gaps)", gapNums["gaps_shadowed_rule"], gapNums["gaps_redundant_rule"])
		}
		c.Reason += "; " + lastText
	} else {
		c.Result, c.Reason = Met, "every rule was used, is within its review date and is narrow; "+lastText
	}
	return c
}

func serviceRows(rows []query.ServiceRow, cde map[string]bool) [][]string {
	var out [][]string
	for _, r := range rows {
		out = append(out, []string{r.Client, r.Server, u(uint64(r.Port)), ProtoName(r.Proto), r.Identity, r.Verdict, r.Rule,
			u(r.Flows), u(r.Bytes), ts(r.FirstSeen), ts(r.LastSeen)})
	}
	return out
}

var serviceHeader = []string{"client_segment", "server_segment", "service_port", "proto", "client_identity", "verdict", "rule",
	"flows", "bytes", "first_seen", "last_seen"}

func (b *builder) cdeTrafficCheck() Check {
	var in, out, viol []query.ServiceRow
	var nIn, nOut, vIn, vOut uint64
	inSvc, outSvc := map[string]bool{}, map[string]bool{}
	for _, r := range b.in.Services {
		cc, sc := b.cde[r.Client], b.cde[r.Server]
		if r.Verdict == "violation" {
			viol = append(viol, r)
			if cc || sc {
				b.summary.CDEViolations += r.Flows
			}
		}
		switch {
		case sc && !cc:
			in = append(in, r)
			nIn += r.Flows
			inSvc[r.Client+" "+service(r.Port, r.Proto)] = true
			if r.Verdict == "violation" {
				vIn += r.Flows
			}
		case cc && !sc:
			out = append(out, r)
			nOut += r.Flows
			outSvc[r.Server+" "+service(r.Port, r.Proto)] = true
			if r.Verdict == "violation" {
				vOut += r.Flows
			}
		}
	}
	b.summary.FlowsIntoCDE, b.summary.FlowsOutOfCDE = nIn, nOut
	evIn := b.table("cde_inbound.csv", serviceHeader, serviceRows(in, b.cde))
	evOut := b.table("cde_outbound.csv", serviceHeader, serviceRows(out, b.cde))
	evV := b.table("violations.csv", serviceHeader, serviceRows(viol, b.cde))
	var find []string
	agg := map[string]uint64{}
	for _, r := range append(append([]query.ServiceRow{}, in...), out...) {
		if r.Verdict == "violation" {
			agg[fmt.Sprintf("%s -> %s %s", r.Client, r.Server, service(r.Port, r.Proto))] += r.Flows
		}
	}
	for k, n := range agg {
		find = append(find, fmt.Sprintf("%s: %d flows no rule allows", k, n))
	}
	sort.Strings(find)
	c := Check{
		Check: checkCDETraffic, Title: "Inbound and outbound CDE traffic",
		Checked: "Every flow of the window with exactly one end in the CDE, inbound (the CDE end offers the service) and outbound " +
			"(the CDE end is the client), against the verdict of the policy: a violation is traffic no rule allows.",
		Numbers: map[string]uint64{"flows_into_cde": nIn, "flows_out_of_cde": nOut, "inbound_violations": vIn, "outbound_violations": vOut,
			"inbound_services": uint64(len(inSvc)), "outbound_services": uint64(len(outSvc))},
		Findings: limit(find), Evidence: []string{evIn, evOut, evV},
	}
	switch {
	case len(b.cde) == 0:
		c.Result, c.Reason = NotAssessable, "no segment is tagged "+strings.Join(CDETags, " or ")
	case nIn+nOut == 0:
		c.Result, c.Reason = NotAssessable, "no flow into or out of the CDE was recorded in the window"
	case vIn+vOut > 0:
		c.Result, c.Reason = Findings, fmt.Sprintf("%d inbound and %d outbound CDE flows were not allowed by any rule", vIn, vOut)
	default:
		c.Result, c.Reason = Met, fmt.Sprintf("all %d inbound and %d outbound CDE flows were allowed by a rule (%d inbound and %d outbound services)",
			nIn, nOut, len(inSvc), len(outSvc))
	}
	return c
}

func (b *builder) untrustedCheck() Check {
	var rows []query.ServiceRow
	var n, v, direct, directAllowed uint64
	for _, r := range b.in.Services {
		if r.Client != policy.External || r.Server == policy.External {
			continue
		}
		rows = append(rows, r)
		n += r.Flows
		if r.Verdict == "violation" {
			v += r.Flows
		}
		if b.cde[r.Server] {
			direct += r.Flows
			if r.Verdict != "violation" {
				directAllowed += r.Flows
			}
		}
	}
	ev := b.table("untrusted.csv", serviceHeader, serviceRows(rows, b.cde))
	var find []string
	if v > 0 {
		find = append(find, fmt.Sprintf("%d flows from untrusted networks reached internal segments without a rule", v))
	}
	if directAllowed > 0 {
		find = append(find, fmt.Sprintf("%d flows from untrusted networks reached the CDE directly under an allow rule (1.4.4)", directAllowed))
	}
	c := Check{
		Check: checkUntrusted, Title: "Untrusted to trusted traffic",
		Checked:  "Every flow whose client is outside every declared segment (external) to a declared segment, and whether it reached the CDE directly.",
		Numbers:  map[string]uint64{"flows_from_untrusted": n, "violations": v, "flows_untrusted_to_cde": direct, "allowed_untrusted_to_cde": directAllowed},
		Findings: find, Evidence: []string{ev},
	}
	switch {
	case n == 0:
		c.Result, c.Reason = NotAssessable, "no flow from untrusted networks was recorded in the window"
	case len(find) > 0:
		c.Result, c.Reason = Findings, strings.Join(find, "; ")
	default:
		c.Result, c.Reason = Met, fmt.Sprintf("all %d flows from untrusted networks were allowed by rules and none reached the CDE directly", n)
	}
	return c
}

func (b *builder) identitiesCheck() Check {
	type key struct {
		id, server string
		port       uint16
		proto      uint8
		verdict    string
		rule       string
	}
	agg := map[key]*query.ServiceRow{}
	ids := map[string]bool{}
	var unattributed, flows uint64
	for _, r := range b.in.Services {
		if !b.cde[r.Server] || b.cde[r.Client] {
			continue
		}
		flows += r.Flows
		if r.Identity == "" {
			unattributed += r.Flows
		} else {
			ids[r.Identity] = true
		}
		k := key{r.Identity, r.Server, r.Port, r.Proto, r.Verdict, r.Rule}
		a := agg[k]
		if a == nil {
			c := r
			c.Client = ""
			agg[k] = &c
			continue
		}
		a.Flows += r.Flows
		a.Bytes += r.Bytes
		if r.FirstSeen.Before(a.FirstSeen) {
			a.FirstSeen = r.FirstSeen
		}
		if r.LastSeen.After(a.LastSeen) {
			a.LastSeen = r.LastSeen
		}
	}
	var list []*query.ServiceRow
	for _, a := range agg {
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool {
		a, c := list[i], list[j]
		switch {
		case a.Identity != c.Identity:
			return a.Identity < c.Identity
		case a.Server != c.Server:
			return a.Server < c.Server
		case a.Port != c.Port:
			return a.Port < c.Port
		case a.Proto != c.Proto:
			return a.Proto < c.Proto
		case a.Verdict != c.Verdict:
			return a.Verdict < c.Verdict
		}
		return a.Rule < c.Rule
	})
	var rows [][]string
	var find []string
	for _, a := range list {
		rows = append(rows, []string{a.Identity, a.Server, u(uint64(a.Port)), ProtoName(a.Proto), a.Verdict, a.Rule,
			u(a.Flows), ts(a.FirstSeen), ts(a.LastSeen)})
		if a.Verdict == "violation" && a.Identity != "" {
			find = append(find, fmt.Sprintf("%s reached %s %s without a rule (%d flows)", a.Identity, a.Server, service(a.Port, a.Proto), a.Flows))
		}
	}
	if unattributed > 0 {
		find = append([]string{fmt.Sprintf("%d flows into the CDE carry no identity (unattributed)", unattributed)}, find...)
	}
	b.summary.IdentitiesReachingCDE = uint64(len(ids))
	b.summary.UnattributedIntoCDE = unattributed
	ev := b.table("identities.csv", []string{"identity", "server_segment", "service_port", "proto", "verdict", "rule", "flows", "first_seen", "last_seen"}, rows)
	evidence := []string{ev}
	var dormant uint64
	if rev := b.in.Identities; rev != nil {
		// The audit layer's identity review: every identity's reach (not
		// only into the CDE, access-log sessions too) and the dormant
		// entitlements of identity-scoped rules.
		var buf bytes.Buffer
		if err := audit.WriteIdentityCSV(&buf, rev); err == nil {
			b.tables = append(b.tables, Table{Name: "identity_review.csv", Raw: buf.Bytes()})
			evidence = append(evidence, "evidence/identity_review.csv")
		}
		var drows [][]string
		for _, d := range rev.Dormant {
			dormant++
			drows = append(drows, []string{d.Identity, d.Kind, d.Rule, strings.Join(d.From, " "), strings.Join(d.To, " "), strings.Join(d.Ports, " "),
				strconv.FormatBool(d.Seen), strconv.Itoa(d.Line)})
			find = append(find, fmt.Sprintf("%s is entitled by rule %s (%s -> %s %s) and never used it (dormant)", d.Identity, d.Rule,
				strings.Join(d.From, " "), strings.Join(d.To, " "), strings.Join(d.Ports, " ")))
		}
		evidence = append(evidence, b.table("dormant_entitlements.csv", []string{"identity", "kind", "rule", "from", "to", "ports", "identity_seen", "line"}, drows))
	}
	c := Check{
		Check: checkIdentities, Title: "Identities with access to the CDE",
		Checked: "Every user and service account (client identity from access logs and the inventory) with flows into the CDE from outside it: " +
			"which CDE services each reached, under which rule, first and last seen — the list for the access review.",
		Numbers:  map[string]uint64{"identities_reaching_cde": uint64(len(ids)), "unattributed_flows_into_cde": unattributed, "flows_into_cde": flows},
		Findings: limit(find), Evidence: evidence,
	}
	if b.in.Identities != nil {
		c.Numbers["dormant_entitlements"] = dormant
		c.Numbers["identities_reviewed"] = uint64(b.in.Identities.Summary.Identities)
	}
	switch {
	case len(b.cde) == 0:
		c.Result, c.Reason = NotAssessable, "no segment is tagged "+strings.Join(CDETags, " or ")
	case flows == 0:
		c.Result, c.Reason = NotAssessable, "no flow into the CDE was recorded in the window"
	case len(find) > 0:
		c.Result, c.Reason = Findings, fmt.Sprintf("%d identities reached the CDE; %d flows into it were unattributed; %d dormant entitlements", len(ids), unattributed, dormant)
	default:
		c.Result, c.Reason = Met, fmt.Sprintf("every flow into the CDE is attributed to one of %d identities and allowed by a rule; review the list", len(ids))
	}
	return c
}

func pct(n, d uint64) string {
	if d == 0 {
		return "0"
	}
	return strconv.FormatFloat(100*float64(n)/float64(d), 'f', 1, 64)
}

func (b *builder) loggingCheck() Check {
	var rows [][]string
	var events, failures, incomplete uint64
	var find []string
	for _, s := range b.in.AccessSources {
		events += s.Events
		failures += s.Failures
		rows = append(rows, []string{s.Source, u(s.Events), u(s.WithUser), pct(s.WithUser, s.Events), u(s.WithSrcAddr), pct(s.WithSrcAddr, s.Events),
			u(s.WithOutcome), pct(s.WithOutcome, s.Events), u(s.Failures), ts(s.FirstSeen), ts(s.LastSeen)})
		var miss []string
		if s.WithUser < s.Events {
			miss = append(miss, fmt.Sprintf("user %s%%", pct(s.WithUser, s.Events)))
		}
		if s.WithSrcAddr < s.Events {
			miss = append(miss, fmt.Sprintf("origin address %s%%", pct(s.WithSrcAddr, s.Events)))
		}
		if s.WithOutcome < s.Events {
			miss = append(miss, fmt.Sprintf("outcome %s%%", pct(s.WithOutcome, s.Events)))
		}
		if len(miss) > 0 {
			incomplete++
			find = append(find, fmt.Sprintf("source %s: not every event has its fields (%s)", s.Source, strings.Join(miss, ", ")))
		}
	}
	ev := b.table("access_sources.csv", []string{"source", "events", "with_user", "with_user_pct", "with_src_addr", "with_src_addr_pct",
		"with_outcome", "with_outcome_pct", "failures", "first_seen", "last_seen"}, rows)
	var frows [][]string
	var failed uint64
	for _, f := range b.in.FailedAccess {
		failed += f.Attempts
		frows = append(frows, []string{f.Source, f.User, f.SrcAddr, f.Outcome, u(f.Attempts), ts(f.FirstSeen), ts(f.LastSeen)})
	}
	b.summary.FailedLogins = failed
	evF := b.table("failed_access.csv", []string{"source", "user", "src_addr", "outcome", "attempts", "first_seen", "last_seen"}, frows)
	c := Check{
		Check: checkLogging, Title: "Audit log coverage",
		Checked: "Which access-log sources sent events in the window, the share of events carrying the user, the origin address and the outcome " +
			"(PCI DSS 10.2.2), and the failed and denied access attempts (10.2.1.4).",
		Numbers: map[string]uint64{"sources": uint64(len(b.in.AccessSources)), "events": events, "incomplete_sources": incomplete,
			"failed_logins": failed},
		Findings: limit(find), Evidence: []string{ev, evF},
	}
	switch {
	case events == 0:
		c.Result, c.Reason = NotAssessable, "no access-log events were received in the window: point sshd, web servers and gateways at ingest.access"
	case incomplete > 0:
		c.Result, c.Reason = Findings, fmt.Sprintf("%d of %d sources have events without a user, an origin or an outcome", incomplete, len(b.in.AccessSources))
	default:
		c.Result, c.Reason = Met, fmt.Sprintf("%d sources logged %d events, every one with user, origin and outcome; %d failed or denied attempts recorded",
			len(b.in.AccessSources), events, failed)
	}
	return c
}

func (b *builder) alertsCheck() Check {
	var rows [][]string
	sev := map[string]uint64{}
	for _, a := range b.in.Alerts {
		sev[a.Severity]++
		src, dst := "", ""
		if a.SrcAddr.IsValid() {
			src = a.SrcAddr.String()
		}
		if a.DstAddr.IsValid() {
			dst = a.DstAddr.String()
		}
		rows = append(rows, []string{a.ID, a.Kind, a.Severity, ts(a.FirstSeen), ts(a.LastSeen), src, a.SrcSegment, dst, a.DstSegment,
			a.SrcIdentity, u(a.Count), a.Summary})
	}
	b.summary.Alerts = uint64(len(b.in.Alerts))
	ev := b.table("alerts.csv", []string{"alert_id", "kind", "severity", "first_seen", "last_seen", "src_addr", "src_segment", "dst_addr",
		"dst_segment", "src_identity", "count", "summary"}, rows)
	kinds := map[string]uint64{}
	for _, a := range b.in.Alerts {
		kinds[a.Kind]++
	}
	var find []string
	for k, n := range kinds {
		find = append(find, fmt.Sprintf("%d %s alerts", n, k))
	}
	sort.Strings(find)
	urgent := sev["critical"] + sev["high"]
	c := Check{
		Check: checkAlerts, Title: "Alert review",
		Checked: "The detectors' alerts of the window (policy violations, scans, brute force, new edges, lateral movement, segmentation breaches) " +
			"by kind and severity: the security events to be reviewed.",
		Numbers:  map[string]uint64{"alerts": uint64(len(b.in.Alerts)), "critical": sev["critical"], "high": sev["high"], "medium": sev["medium"], "low": sev["low"]},
		Findings: find, Evidence: []string{ev},
	}
	if urgent > 0 {
		c.Result, c.Reason = Findings, fmt.Sprintf("%d high or critical alerts were raised; each needs a documented review", urgent)
	} else {
		c.Result, c.Reason = Met, fmt.Sprintf("%d alerts were raised, none high or critical; detection ran over the window", len(b.in.Alerts))
	}
	return c
}

func (b *builder) retentionCheck() Check {
	var rows [][]string
	var flows query.Retained
	for _, r := range b.in.Retention {
		rows = append(rows, []string{r.Table, u(r.Rows), day(r.OldestDay), day(r.NewestDay)})
		if r.Table == "flows" {
			flows = r
		}
	}
	ev := b.table("retention.csv", []string{"table", "rows", "oldest_day", "newest_day"}, rows)
	var days uint64
	if flows.Rows > 0 {
		b.summary.OldestRetainedDay = day(flows.OldestDay)
		today := b.in.GeneratedAt.UTC().Truncate(24 * time.Hour)
		if today.After(flows.OldestDay) {
			days = uint64(today.Sub(flows.OldestDay)/(24*time.Hour)) + 1
		} else {
			days = 1
		}
	}
	b.summary.RetainedDays = days
	ttlDays := uint64(b.in.RetentionTTL / (24 * time.Hour))
	c := Check{
		Check: checkRetention, Title: "Retention actually available",
		Checked: "The oldest day of flows, access events, alerts and probe results actually stored in ClickHouse, against 12 months of history " +
			"with the last three immediately available, and the configured clickhouse.retention.",
		Numbers:  map[string]uint64{"retained_days": days, "configured_retention_days": ttlDays},
		Findings: []string{}, Evidence: []string{ev},
	}
	switch {
	case flows.Rows == 0:
		c.Result, c.Reason = NotAssessable, "no flows are stored"
	case b.in.RetentionTTL > 0 && b.in.RetentionTTL < 365*24*time.Hour:
		c.Result = Findings
		c.Reason = fmt.Sprintf("clickhouse.retention keeps %d days of flows, less than 12 months (and no archive is configured)", ttlDays)
		c.Findings = append(c.Findings, c.Reason)
	case days < 90:
		c.Result = Findings
		c.Reason = fmt.Sprintf("only %d days of flows are stored (oldest %s): 3 months must be immediately available", days, day(flows.OldestDay))
		c.Findings = append(c.Findings, c.Reason)
	default:
		c.Result, c.Reason = Met, fmt.Sprintf("%d days of flows are stored (oldest %s) and retention is long enough", days, day(flows.OldestDay))
	}
	return c
}

func (b *builder) segTestsCheck() Check {
	var rows [][]string
	var attempts, breaches uint64
	var find []string
	for _, p := range b.in.ProbeRuns {
		attempts += p.Attempts
		breaches += p.Breach
		rows = append(rows, []string{p.RunID, p.Prober, strings.Join(p.SrcSegments, " "), ts(p.Start), ts(p.End), "active connection attempts (flowaudit probe)",
			u(p.Attempts), u(p.Pass), u(p.Breach), u(p.Blocked), u(p.TargetSegments)})
		if p.Breach > 0 {
			find = append(find, fmt.Sprintf("run %s by %s at %s: %d breaches (reached what the policy denies)", p.RunID, p.Prober, ts(p.Start), p.Breach))
		}
	}
	b.summary.ProbeRuns = uint64(len(b.in.ProbeRuns))
	ev := b.table("probe_runs.csv", []string{"run_id", "tester", "from_segments", "start", "end", "method", "attempts", "pass", "breach",
		"blocked", "target_segments"}, rows)
	c := Check{
		Check: checkSegTests, Title: "Segmentation test evidence",
		Checked: fmt.Sprintf("The active segmentation tests (flowaudit probe, probe_results) from %s to %s: tester, time, method and results; "+
			"a breach is a connection the policy denies that succeeded.", day(b.in.ProbeWindow.From), day(b.in.ProbeWindow.To)),
		Numbers:  map[string]uint64{"probe_runs": uint64(len(b.in.ProbeRuns)), "attempts": attempts, "breaches": breaches},
		Findings: limit(find), Evidence: []string{ev},
	}
	switch {
	case len(b.in.ProbeRuns) == 0:
		c.Result, c.Reason = NotAssessable, "no probe run in the last 12 months: run \"flowaudit probe\" from each segment (or set probe.schedule)"
	case breaches > 0:
		c.Result, c.Reason = Findings, fmt.Sprintf("%d of %d attempts breached the segmentation", breaches, attempts)
	default:
		c.Result, c.Reason = Met, fmt.Sprintf("%d probe runs, %d attempts, no breach", len(b.in.ProbeRuns), attempts)
	}
	return c
}
