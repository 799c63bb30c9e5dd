package probe

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/policy"
)

const labPolicy = `segments:
  - name: web
    cidrs: [10.71.1.0/24]
  - name: app
    cidrs: [10.71.2.0/24]
  - name: db
    cidrs: [10.71.3.0/24, "fd71:3::/64"]
    tags: [pci-cde, sensitive]
inventory:
  - cidr: 10.71.3.10/32
    workload: orders-db
rules:
  - name: web-to-app
    from: [web]
    to: [app]
    ports: ["8080/tcp", "icmp"]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: ["5432/tcp", "9000-9002/tcp"]
  - name: app-to-db-admin
    from: [app]
    to: [db]
    ports: ["2222/tcp"]
    identities: [alice]
  - name: db-to-web-all
    from: [db]
    to: [web]
    ports: [tcp]
default: deny
`

func compile(t *testing.T, yaml string) *policy.Matcher {
	t.Helper()
	p, err := policy.Parse([]byte(yaml), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// line is a check in a compact form for diffs.
func line(c Check) string {
	return fmt.Sprintf("%s %s(%s) %s %s %s", c.DstSegment, c.DstAddr, c.DstWorkload, portName(c.DstPort, c.Proto), c.Expected, c.Rule)
}

func TestBuildPlan(t *testing.T) {
	m := compile(t, labPolicy)
	opts := PlanOptions{TargetsPerSegment: 2, DeniedSample: 0, ICMP: true}
	plan, err := BuildPlan(m, Source{Segment: "app", Addr: netip.MustParseAddr("10.71.2.10")}, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Every allowed port of app -> db is probed and expected to pass;
	// 2222 only an identity rule allows: left out (twice: one per target).
	got := map[string]bool{}
	for _, c := range plan.Checks {
		got[line(c)] = true
	}
	for _, want := range []string{
		"db 10.71.3.10(orders-db) 5432/tcp allow app-to-db",
		"db 10.71.3.10(orders-db) 9000/tcp allow app-to-db",
		"db 10.71.3.10(orders-db) 9002/tcp allow app-to-db",
		"db 10.71.3.10(orders-db) 22/tcp deny ",
		"db 10.71.3.10(orders-db) 8080/tcp deny ",
		"db 10.71.3.10(orders-db) 53/udp deny ",
		"db 10.71.3.10(orders-db) icmp echo deny ",
		"db 10.71.3.1() 5432/tcp allow app-to-db",
		"web 10.71.1.1() 3389/tcp deny ",
	} {
		if !got[want] {
			t.Errorf("plan lacks %q", want)
		}
	}
	if got["db 10.71.3.10(orders-db) 2222/tcp deny "] || plan.IdentityOnly != 2 {
		t.Errorf("identity-only port 2222: IdentityOnly = %d, want 2 and no check", plan.IdentityOnly)
	}
	// The inventory workload comes first, then host 1 of the first CIDR;
	// the IPv6 CIDR is not reached with two targets. Never app itself.
	targets := map[string]bool{}
	for _, c := range plan.Checks {
		targets[c.DstSegment+" "+c.DstAddr.String()] = true
		if c.DstSegment == "app" {
			t.Errorf("probes its own segment: %s", line(c))
		}
		if c.Sensitive != (c.DstSegment == "db") {
			t.Errorf("%s: Sensitive = %v", line(c), c.Sensitive)
		}
	}
	if diff := cmp.Diff(targets, map[string]bool{"db 10.71.3.10": true, "db 10.71.3.1": true,
		"web 10.71.1.1": true, "web 10.71.1.2": true}); diff != "" {
		t.Errorf("targets (-got +want):\n%s", diff)
	}
	// Per target: 22 attacker TCP + 2 UDP + rule ports not among them
	// (9000, 9002, 2222) + ICMP; db's lack 2222 (identity-only).
	if got, want := len(plan.Checks), 2*(22+2+3+1-1)+2*(22+2+3+1); got != want {
		t.Errorf("%d checks, want %d", got, want)
	}
}

// TestPlanReplyIsNotAllowed: db -> web allows every TCP port, so Decide
// takes web -> db:40000 for a reply; a new connection the other way is
// denied by a stateful firewall and must be expected so.
func TestPlanReplyIsNotAllowed(t *testing.T) {
	m := compile(t, labPolicy)
	plan, err := BuildPlan(m, Source{Segment: "web"}, PlanOptions{TargetsPerSegment: 1, DeniedSample: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plan.Checks {
		if c.DstSegment == "db" && c.Expected != ExpectDeny {
			t.Errorf("web -> %s expected %s, want deny", line(c), c.Expected)
		}
	}
	plan, err = BuildPlan(m, Source{Segment: "db"}, PlanOptions{TargetsPerSegment: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plan.Checks {
		if c.DstSegment == "web" && c.Proto == policy.ProtoTCP && (c.Expected != ExpectAllow || c.Rule != "db-to-web-all") {
			t.Errorf("db -> %s, want allow by db-to-web-all", line(c))
		}
	}
}

func TestPlanDeniedSampleDeterministic(t *testing.T) {
	m := compile(t, labPolicy)
	opts := PlanOptions{TargetsPerSegment: 1, DeniedSample: 4}
	a, _ := BuildPlan(m, Source{Segment: "web"}, opts)
	b, _ := BuildPlan(m, Source{Segment: "web"}, opts)
	if diff := cmp.Diff(a, b, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("two plans differ:\n%s", diff)
	}
	base, _ := BuildPlan(m, Source{Segment: "web"}, PlanOptions{TargetsPerSegment: 1})
	if got, want := len(a.Checks)-len(base.Checks), 2*4; got != want {
		t.Errorf("denied sample added %d checks, want %d", got, want)
	}
}

func TestPlanExternalAndScope(t *testing.T) {
	m := compile(t, `segments:
  - name: db
    cidrs: [10.71.3.0/30]
rules: []
`)
	plan, err := BuildPlan(m, Source{Segment: policy.External}, PlanOptions{TargetsPerSegment: 5})
	if err != nil {
		t.Fatal(err)
	}
	// A /30 has two hosts after its network address... and the broadcast
	// address is host 3: firstHost stops at the prefix's end.
	seen := map[string]bool{}
	for _, c := range plan.Checks {
		seen[c.DstAddr.String()] = true
		if err := inScope(m, &c); err != nil {
			t.Error(err)
		}
	}
	if diff := cmp.Diff(seen, map[string]bool{"10.71.3.1": true, "10.71.3.2": true, "10.71.3.3": true}); diff != "" {
		t.Errorf("targets (-got +want):\n%s", diff)
	}
	if _, err := BuildPlan(m, Source{Segment: "nope"}, PlanOptions{TargetsPerSegment: 1}); err == nil || !strings.Contains(err.Error(), `"nope" is not declared`) {
		t.Errorf("unknown segment: err = %v", err)
	}
	bad := Check{DstAddr: netip.MustParseAddr("192.0.2.1"), DstSegment: "db", SrcSegment: policy.External}
	if err := inScope(m, &bad); err == nil {
		t.Error("inScope accepted an address outside every segment")
	}
}

func TestFirstHost(t *testing.T) {
	for _, tc := range []struct {
		cidr string
		i    int
		want string
	}{
		{"10.0.0.0/24", 0, "10.0.0.1"},
		{"10.0.0.0/24", 2, "10.0.0.3"},
		{"10.0.0.7/32", 0, "10.0.0.7"},
		{"10.0.0.7/32", 1, "invalid IP"},
		{"10.0.0.0/31", 1, "10.0.0.1"},
		{"10.0.0.0/30", 3, "invalid IP"},
		{"fd00::/64", 0, "fd00::1"},
	} {
		if got := firstHost(netip.MustParsePrefix(tc.cidr), tc.i).String(); got != tc.want {
			t.Errorf("firstHost(%s, %d) = %s, want %s", tc.cidr, tc.i, got, tc.want)
		}
	}
}

func TestResolveSource(t *testing.T) {
	m := compile(t, labPolicy)
	a := netip.MustParseAddr
	for _, tc := range []struct {
		from    string
		local   []netip.Addr
		want    Source
		wantErr string
	}{
		{"", []netip.Addr{a("192.0.2.9"), a("10.71.1.10")}, Source{"web", a("10.71.1.10")}, ""},
		{"", []netip.Addr{a("192.0.2.9")}, Source{policy.External, a("192.0.2.9")}, ""},
		{"", []netip.Addr{a("10.71.1.10"), a("10.71.2.10")}, Source{}, "segments app, web: choose one"},
		{"app", []netip.Addr{a("10.71.1.10"), a("10.71.2.10")}, Source{"app", a("10.71.2.10")}, ""},
		{"db", []netip.Addr{a("10.71.1.10")}, Source{}, "no address in segment db"},
	} {
		got, err := ResolveSource(m, tc.from, tc.local)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ResolveSource(%q, %v) err = %v, want %q", tc.from, tc.local, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ResolveSource(%q, %v) = %v, %v; want %v", tc.from, tc.local, got, err, tc.want)
		}
	}
}

func TestOutcome(t *testing.T) {
	want := map[Expectation]map[Observation]Outcome{
		ExpectAllow: {ObservedOpen: OutcomePass, ObservedClosed: OutcomePass, ObservedFiltered: OutcomeBlocked, ObservedError: OutcomeBlocked},
		ExpectDeny:  {ObservedOpen: OutcomeBreach, ObservedClosed: OutcomePass, ObservedFiltered: OutcomePass, ObservedError: OutcomePass},
	}
	for exp, m := range want {
		for obs, w := range m {
			if got := outcome(exp, obs); got != w {
				t.Errorf("outcome(%s, %s) = %s, want %s", exp, obs, got, w)
			}
		}
	}
}

// TestPlanSelectorsAndDenyRules: a rule whose destination is a label
// selector allows the labelled workload only; a deny rule before an allow
// wins (first match), and staged rules expect nothing.
func TestPlanSelectorsAndDenyRules(t *testing.T) {
	m := compile(t, `segments:
  - name: app
    cidrs: [10.71.2.0/24]
  - name: db
    cidrs: [10.71.3.0/24]
inventory:
  - cidr: 10.71.3.10/32
    workload: orders-db
    labels: {app: orders}
  - cidr: 10.71.3.20/32
    workload: billing-db
    labels: {app: billing}
rules:
  - name: no-redis
    from: [app]
    to: [db]
    ports: ["6379/tcp"]
    action: deny
  - name: orders-reads-db
    from: [app]
    to: [{segment: db, labels: {app: orders}}]
    ports: ["5432/tcp", "6379/tcp"]
  - name: staged-mysql
    from: [app]
    to: [db]
    ports: ["3306/tcp"]
    mode: staged
`)
	plan, err := BuildPlan(m, Source{Segment: "app"}, PlanOptions{TargetsPerSegment: 2})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, c := range plan.Checks {
		got[line(c)] = true
	}
	for _, want := range []string{
		"db 10.71.3.10(orders-db) 5432/tcp allow orders-reads-db",
		"db 10.71.3.20(billing-db) 5432/tcp deny ",
		"db 10.71.3.10(orders-db) 6379/tcp deny ",
		"db 10.71.3.10(orders-db) 3306/tcp deny ",
	} {
		if !got[want] {
			t.Errorf("plan lacks %q", want)
		}
	}
}
