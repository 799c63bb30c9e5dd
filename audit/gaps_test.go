package audit

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

const gapSegments = `
segments:
  - name: web
    cidrs: [10.1.0.0/16]
  - name: app
    cidrs: [10.3.0.0/16]
  - name: db
    cidrs: [10.2.0.0/16]
inventory:
  - cidr: 10.3.0.10/32
    workload: checkout
    service_account: svc-checkout
    labels: {app: checkout}
`

// staticFindings runs Gaps without traffic and keeps the static kinds:
// "KIND rule [covered_by or taken_over_by]".
func staticFindings(t *testing.T, rules string) []string {
	t.Helper()
	m := compile(t, gapSegments+rules)
	rep := Gaps(m, GapsInput{}, DefaultGapsOptions(query.Window{From: time.Unix(0, 0), To: time.Unix(3600, 0)}))
	var out []string
	for _, f := range rep.Findings {
		switch f.Kind {
		case KindShadowedRule:
			out = append(out, fmt.Sprintf("%s %s %s by %s", f.Kind, f.Severity, f.Rule, strings.Join(f.Evidence.CoveredBy, "+")))
		case KindRedundantRule:
			by := strings.Join(f.Evidence.TakenOverBy, "+")
			if f.Evidence.Default != "" {
				by += "+default " + f.Evidence.Default
			}
			out = append(out, fmt.Sprintf("%s %s %s by %s", f.Kind, f.Severity, f.Rule, strings.TrimPrefix(by, "+")))
		}
	}
	sort.Strings(out)
	return out
}

func TestGapsStatic(t *testing.T) {
	for _, tc := range []struct {
		name, rules string
		want        []string
	}{
		{"peers covered by two earlier rules together", `
rules:
  - {name: web-db, from: [web], to: [db], ports: ["5432/tcp"]}
  - {name: app-db, from: [app], to: [db], ports: ["5432/tcp"]}
  - {name: tiers-db, from: [web, app], to: [db], ports: ["5432/tcp"]}
`, []string{"REDUNDANT_RULE low app-db by tiers-db", "REDUNDANT_RULE low web-db by tiers-db",
			"SHADOWED_RULE medium tiers-db by web-db+app-db"}},
		{"ports covered by two earlier rules together", `
rules:
  - {name: low, from: [web], to: [db], ports: ["1-5432/tcp"]}
  - {name: high, from: [web], to: [db], ports: ["5433-9000/tcp", "53/udp"]}
  - {name: middle, from: [web], to: [db], ports: ["5000-6000/tcp"]}
`, []string{"SHADOWED_RULE medium middle by low+high"}},
		{"ports and peers covered by two earlier rules together", `
rules:
  - {name: a, from: [web], to: [db], ports: ["5432/tcp", "6432/tcp"]}
  - {name: b, from: [app], to: [db], ports: ["tcp"]}
  - {name: c, from: [web, app], to: [db], ports: ["5432/tcp"]}
`, []string{"SHADOWED_RULE medium c by a+b"}},
		{"partly covered is not shadowed", `
rules:
  - {name: low, from: [web], to: [db], ports: ["1-5000/tcp"]}
  - {name: wide, from: [web], to: [db], ports: ["4000-6000/tcp"]}
`, nil},
		{"deny after a broader allow", `
rules:
  - {name: web-db-any, from: [web], to: [db], ports: ["tcp"]}
  - {name: no-ssh, action: deny, from: [web], to: [db], ports: ["22/tcp"]}
`, []string{"SHADOWED_RULE high no-ssh by web-db-any"}},
		{"deny moved first is no longer shadowed", `
rules:
  - {name: no-ssh, action: deny, from: [web], to: [db], ports: ["22/tcp"]}
  - {name: web-db-any, from: [web], to: [db], ports: ["tcp"]}
`, nil},
		{"narrow allow before a wider one is redundant", `
rules:
  - {name: pg, from: [web], to: [db], ports: ["5432/tcp"]}
  - {name: range, from: [web], to: [db], ports: ["5000-6000/tcp"]}
`, []string{"REDUNDANT_RULE low pg by range"}},
		{"a final deny under default deny is redundant", `
rules:
  - {name: pg, from: [web], to: [db], ports: ["5432/tcp"]}
  - {name: rest, action: deny, from: [web], to: [db], ports: ["any"]}
`, []string{"REDUNDANT_RULE low rest by default deny"}},
		{"a final deny under default allow is needed", `
rules:
  - {name: pg, from: [web], to: [db], ports: ["5432/tcp"]}
  - {name: rest, action: deny, from: [web], to: [db], ports: ["any"]}
default: allow
`, nil},
		{"identity-scoped rule after an unscoped one", `
rules:
  - {name: ssh, from: [web], to: [db], ports: ["22/tcp"]}
  - {name: ssh-alice, from: [web], to: [db], ports: ["22/tcp"], identities: [alice]}
`, []string{"SHADOWED_RULE medium ssh-alice by ssh"}},
		{"unscoped rule after an identity-scoped one is needed", `
rules:
  - {name: ssh-alice, from: [web], to: [db], ports: ["22/tcp"], identities: [alice]}
  - {name: ssh, from: [web], to: [db], ports: ["22/tcp"]}
`, []string{"REDUNDANT_RULE low ssh-alice by ssh"}},
		{"identities of users and the service account together", `
rules:
  - {name: by-sa, from: [app], to: [db], ports: ["5432/tcp"], identities: [svc-checkout]}
  - {name: by-users, from: [app], to: [db], ports: ["5432/tcp"], identities: [alice]}
  - {name: checkout-alice, from: [{labels: {app: checkout}}], to: [db], ports: ["5432/tcp"], identities: [alice, bob]}
`, []string{"SHADOWED_RULE medium checkout-alice by by-sa"}}, // the service account of checkout already matches by-sa
		{"selector covered by its segment", `
rules:
  - {name: app-db, from: [app], to: [db], ports: ["5432/tcp"]}
  - {name: checkout-db, from: [{segment: app, labels: {app: checkout}}], to: [db], ports: ["5432/tcp"]}
`, []string{"SHADOWED_RULE medium checkout-db by app-db"}},
		{"segment not covered by its selector", `
rules:
  - {name: checkout-db, from: [{segment: app, labels: {app: checkout}}], to: [db], ports: ["5432/tcp"]}
  - {name: app-db, from: [app], to: [db], ports: ["5432/tcp"]}
`, []string{"REDUNDANT_RULE low checkout-db by app-db"}},
		{"staged rules are judged in the staged order", `
rules:
  - {name: web-db, from: [web], to: [db], ports: ["tcp"]}
  - {name: staged-deny, mode: staged, action: deny, from: [web], to: [db], ports: ["22/tcp"]}
`, []string{"SHADOWED_RULE high staged-deny by web-db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := staticFindings(t, tc.rules)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("static findings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestGapsStaticMatchesDecide checks the interval arithmetic against the
// matcher on every representative connection: a rule reported shadowed
// decides none, and a rule reported redundant decides each the same way
// as the policy without it.
func TestGapsStaticMatchesDecide(t *testing.T) {
	segs := []string{"web", "app", "db"}
	ports := []string{"22/tcp", "5432/tcp", "5000-6000/tcp", "tcp", "53/udp", "any", "1-100/tcp"}
	ids := [][]string{nil, nil, {"alice"}, {"svc-checkout"}}
	for seed := 0; seed < 300; seed++ {
		rnd := uint32(seed*2654435761 + 1)
		next := func(n int) int {
			rnd ^= rnd << 13
			rnd ^= rnd >> 17
			rnd ^= rnd << 5
			return int(rnd % uint32(n))
		}
		var b strings.Builder
		b.WriteString("rules:\n")
		n := 2 + next(5)
		for i := 0; i < n; i++ {
			act := "allow"
			if next(3) == 0 {
				act = "deny"
			}
			from := segs[next(3)]
			if next(2) == 0 {
				from += ", " + segs[next(3)]
			}
			id := ids[next(len(ids))]
			idYAML := ""
			if id != nil {
				idYAML = ", identities: [" + strings.Join(id, ", ") + "]"
			}
			fmt.Fprintf(&b, "  - {name: r%d, action: %s, from: [%s], to: [%s], ports: [%q]%s}\n", i, act, from, segs[next(3)], ports[next(len(ports))], idYAML)
		}
		if next(2) == 0 {
			b.WriteString("default: allow\n")
		}
		src := gapSegments + b.String()
		m := compile(t, src)
		rep := Gaps(m, GapsInput{}, DefaultGapsOptions(query.Window{From: time.Unix(0, 0), To: time.Unix(3600, 0)}))
		kinds := map[string]string{}
		for _, f := range rep.Findings {
			if f.Kind == KindShadowedRule || f.Kind == KindRedundantRule {
				kinds[f.Rule] = f.Kind
			}
		}
		p := m.Policy()
		space := newFlowSpace(p)
		for ri, r := range p.Rules {
			if len(space.rules[ri]) == 0 {
				continue // only intra-segment ends: never reaches the rules
			}
			without := *p
			without.Rules = append(append([]policy.Rule{}, p.Rules[:ri]...), p.Rules[ri+1:]...)
			mw, err := policy.Compile(&without)
			if err != nil {
				t.Fatal(err)
			}
			decides, changes := false, false
			forEachConnection(m, mw, func(k, kw *policy.FlowKey) {
				v, rule := m.Decide(k)
				vw, _ := mw.Decide(kw)
				if rule == r.Name {
					decides = true
				}
				if v != vw {
					changes = true
				}
			})
			switch kinds[r.Name] {
			case KindShadowedRule:
				if decides {
					t.Errorf("seed %d: %s reported shadowed but decides a connection\n%s", seed, r.Name, src)
				}
			case KindRedundantRule:
				if changes {
					t.Errorf("seed %d: %s reported redundant but removing it changes a decision\n%s", seed, r.Name, src)
				}
			default:
				if !decides {
					t.Errorf("seed %d: %s decides nothing but is not reported shadowed\n%s", seed, r.Name, src)
				} else if !changes {
					t.Errorf("seed %d: removing %s changes nothing but it is not reported redundant\n%s", seed, r.Name, src)
				}
			}
		}
	}
}

// forEachConnection calls f with one connection per class of the test
// policies (both matchers label addresses alike).
func forEachConnection(m, mw *policy.Matcher, f func(k, kw *policy.FlowKey)) {
	addrs := []string{"10.1.0.1", "10.3.0.1", "10.3.0.10", "10.2.0.1", "192.0.2.1"}
	services := []struct {
		port  uint16
		proto uint8
	}{{22, 6}, {50, 6}, {5432, 6}, {5500, 6}, {7000, 6}, {53, 17}, {54, 17}, {0, 1}, {0, 47}}
	for _, s := range addrs {
		for _, d := range addrs {
			for _, svc := range services {
				for _, id := range []string{"", "alice", "bob", "svc-checkout"} {
					k := policy.FlowKey{Src: m.Lookup(addr(mustAddr(s))), Dst: m.Lookup(addr(mustAddr(d))), DstPort: svc.port,
						Proto: svc.proto, SrcIdentity: id, ServiceSide: 1}
					kw := k
					kw.Src, kw.Dst = mw.Lookup(addr(mustAddr(s))), mw.Lookup(addr(mustAddr(d)))
					f(&k, &kw)
				}
			}
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestGapsEvidence runs Gaps on the CLI fixture's policy with its traffic
// as service edges (no database) and checks the evidence of the findings
// whose numbers matter.
func TestGapsEvidence(t *testing.T) {
	src, err := os.ReadFile("../cmd/flowaudit/testdata/gaps-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := compile(t, string(src))
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	edge := func(c, s string, port uint16) query.ServiceEdge {
		return query.ServiceEdge{Client: mustAddr(c), Server: mustAddr(s), Port: port, Proto: 6, Flows: 2, Bytes: 100,
			FirstSeen: at, LastSeen: at.Add(time.Minute)}
	}
	in := GapsInput{
		Edges: []query.ServiceEdge{
			edge("198.51.100.7", "10.1.0.10", 443), edge("192.168.50.7", "10.1.0.10", 443), edge("192.168.50.9", "10.1.0.10", 443),
			edge("10.1.0.10", "10.3.0.10", 8080), edge("10.3.0.10", "10.2.0.10", 5432),
			edge("10.5.0.1", "10.3.0.10", 8080), edge("10.6.0.1", "10.3.0.10", 8080),
			edge("203.0.113.9", "10.4.0.10", 443), edge("10.9.0.1", "10.4.0.10", 8443), edge("10.9.0.1", "10.4.0.10", 8444),
			edge("10.9.0.1", "10.1.0.10", 22), edge("10.9.0.2", "10.3.0.10", 22), edge("10.1.0.10", "10.3.0.10", 9100),
			edge("10.7.0.5", "10.2.0.10", 22),
		},
		Violations: []query.ViolationEdge{
			{ClientSegment: "web", ServerSegment: "db", Port: 3306, Proto: 6, Rules: []string{""}, Flows: 9, Hours: 3, FirstHour: at, LastSeen: at},
			{ClientSegment: "dev", ServerSegment: "db", Port: 22, Proto: 6, Rules: []string{"no-dev-db"}, Flows: 1, Hours: 1, FirstHour: at, LastSeen: at},
		},
		Mismatches: []query.EnforcementMismatch{{ClientSegment: "dev", ServerSegment: "db", Port: 22, Proto: 6, Verdict: "violation",
			Rule: "no-dev-db", FwAction: "forwarded", Flows: 1, FirstSeen: at, LastSeen: at, Examples: []string{"10.7.0.5 -> 10.2.0.10"}}},
		Versions: []query.AppliedPolicy{{Version: "v1", FirstLoaded: at.Add(-200 * 24 * time.Hour), Content: src}},
	}
	rep := Gaps(m, in, DefaultGapsOptions(query.Window{From: at.Add(-24 * time.Hour), To: at.Add(time.Hour)}))
	got := map[string]GapEvidence{}
	for _, f := range rep.Findings {
		if _, dup := got[f.Kind]; dup {
			t.Errorf("%s reported twice", f.Kind)
		}
		got[f.Kind] = f.Evidence
	}
	if len(got) != len(FindingKinds) {
		t.Errorf("%d kinds reported, want %d: %v", len(got), len(FindingKinds), got)
	}
	for _, tc := range []struct {
		kind string
		got  any
		want any
	}{
		{KindShadowedRule, got[KindShadowedRule].CoveredBy, []string{"ops-pay"}},
		{KindRedundantRule, got[KindRedundantRule].Default, "deny"},
		{KindBroadPorts, []any{got[KindBroadPorts].PortSpan, got[KindBroadPorts].UsedPorts, got[KindBroadPorts].Utilisation},
			[]any{uint64(1000), []string{"8443/tcp", "8444/tcp"}, 0.002}},
		{KindBroadPeers, got[KindBroadPeers].UnusedPairs, []string{"branch-a -> app"}},
		{KindOversegmented, got[KindOversegmented].Segments, []string{"branch-a", "branch-b"}},
		{KindUndersegmented, got[KindUndersegmented].Groups, []WorkloadGroup{{Workloads: []string{"ops1"}, Peers: []string{"pay", "web"}},
			{Workloads: []string{"ops2"}, Peers: []string{"app"}}}},
		{KindUnlabelledSpace, []any{got[KindUnlabelledSpace].Prefix, got[KindUnlabelledSpace].Addresses},
			[]any{"192.168.50.0/24", []string{"192.168.50.7", "192.168.50.9"}}},
		{KindLateralPath, got[KindLateralPath].PolicyPath, []Hop{
			{From: "external", To: "web", Rule: "internet-web", Ports: []string{"443/tcp"}},
			{From: "web", To: "app", Rule: "web-app", Ports: []string{"8080/tcp"}},
			{From: "app", To: "db", Rule: "app-db", Ports: []string{"5432/tcp"}}}},
		{KindLateralPath + " observed flows", len(got[KindLateralPath].ObservedPath), 3},
		{KindViolationHotspot, got[KindViolationHotspot].Hours, uint64(3)},
		{KindEnvCrossing, got[KindEnvCrossing].Envs, []string{"env:dev", "env:prod"}},
		{KindOverdueReview, got[KindOverdueReview].AgeDays, 200},
		{KindEnforcementGap, got[KindEnforcementGap].FwAction, "forwarded"},
	} {
		if d := cmp.Diff(tc.got, tc.want); d != "" {
			t.Errorf("%s evidence (-got +want):\n%s", tc.kind, d)
		}
	}
	// Re-running gives byte-identical findings.
	again := Gaps(m, in, DefaultGapsOptions(query.Window{From: at.Add(-24 * time.Hour), To: at.Add(time.Hour)}))
	if d := cmp.Diff(rep, again); d != "" {
		t.Errorf("second run differs:\n%s", d)
	}
}
