package audit

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

const testPolicy = `
segments:
  - name: web
    cidrs: [10.1.0.0/16]
  - name: app
    cidrs: [10.3.0.0/16]
  - name: db
    cidrs: [10.2.0.0/16]
inventory:
  - cidr: 10.3.0.0/16
    workload: app-tier
    service_account: svc-app
  - cidr: 10.3.9.0/24
    workload: batch
`

func compile(t *testing.T, src string) *policy.Matcher {
	t.Helper()
	p, err := policy.Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	t0  = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	win = query.Window{From: t0.Add(-time.Hour), To: t0.Add(24 * time.Hour)}
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func edge(c, s string, port uint16, proto uint8, ident string, flows uint64, first time.Duration) query.ServiceEdge {
	return query.ServiceEdge{Client: ip(c), Server: ip(s), Port: port, Proto: proto, ClientIdentity: ident,
		Flows: flows, Bytes: flows * 100, FirstSeen: t0.Add(first), LastSeen: t0.Add(first + time.Minute)}
}

func TestRecommend(t *testing.T) {
	m := compile(t, testPolicy)
	var edges []query.ServiceEdge
	edges = append(edges,
		edge("10.3.0.1", "10.2.0.1", 5432, 6, "svc-app", 98, 0),
		edge("10.3.0.2", "10.2.0.1", 5432, 6, "", 2, 0), // 98%: still one identity
		edge("10.3.0.1", "10.2.0.1", 3306, 6, "svc-app", 10, 0),
		edge("10.1.0.1", "10.3.0.1", 8080, 6, "alice", 50, 0),
		edge("10.1.0.1", "10.3.0.1", 8080, 6, "bob", 50, 0),    // no 95% identity
		edge("10.1.0.1", "10.1.0.2", 22, 6, "", 5, 0),          // intra-segment
		edge("10.3.6.6", "10.2.0.9", 5432, 6, "svc-app", 1, 0), // the scanner: held
		edge("10.1.7.7", "10.2.0.9", 22, 6, "", 3, 0),          // new edge: held
	)
	for p := uint16(9000); p < 9020; p++ { // 20 ports: generalized
		edges = append(edges, edge("10.1.0.5", "10.2.0.5", p, 6, "", 1, 0))
	}
	alerts := []query.Alert{
		{ID: "scan1", Kind: "address_scan", SrcAddr: ip("10.3.6.6"), DstSegment: "db", DstPort: 5432, Proto: 6,
			FirstSeen: t0, LastSeen: t0.Add(time.Minute)},
		{ID: "new1", Kind: "new_edge", SrcAddr: ip("10.1.7.7"), DstAddr: ip("10.2.0.9"), DstPort: 22, Proto: 6,
			FirstSeen: t0, LastSeen: t0},
		{ID: "old", Kind: "port_scan", SrcAddr: ip("10.1.0.1"), FirstSeen: t0.Add(-48 * time.Hour), LastSeen: t0.Add(-47 * time.Hour)},
	}
	opt := DefaultRecommendOptions(win)
	rec := Recommend(edges, alerts, m, opt)
	type short struct {
		Name, Status     string
		From, To, Ports  []string
		Identities       []string
		Generalized      bool
		Flows, Uncovered uint64
	}
	var got []short
	for _, r := range rec.Rules {
		got = append(got, short{r.Name, r.Status, r.From, r.To, r.Ports, r.Identities, r.Generalized, r.Evidence.Flows, r.Evidence.Uncovered})
	}
	want := []short{
		{"app-to-db-as-svc-app", "learning", []string{"app"}, []string{"db"}, []string{"3306/tcp", "5432/tcp"}, []string{"svc-app"}, false, 110, 0},
		{"web-to-app", "learning", []string{"web"}, []string{"app"}, []string{"8080/tcp"}, []string{}, false, 100, 0},
		{"web-to-db", "learning", []string{"web"}, []string{"db"}, []string{"9000-9019/tcp"}, []string{}, true, 20, 0},
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("rules (-got +want):\n%s", d)
	}
	// The unlabelled client of app-to-db carries svc-app from the inventory.
	if ids := rec.Rules[0].Evidence.Identities; len(ids) != 1 || ids[0].Flows != 110 {
		t.Errorf("app-to-db identities = %v, want svc-app with all 110 flows", ids)
	}
	var held []string
	for _, h := range rec.Held {
		held = append(held, h.From+">"+h.To+" "+h.Port+" "+h.Alerts[0]+" covered_by="+h.CoveredBy)
	}
	wantHeld := []string{"app>db 5432/tcp scan1 covered_by=app-to-db-as-svc-app", "web>db 22/tcp new1 covered_by="}
	if d := cmp.Diff(held, wantHeld); d != "" {
		t.Errorf("held (-got +want):\n%s", d)
	}

	// Workload granularity: the batch workload inside app is its own end.
	wedges := []query.ServiceEdge{edge("10.3.9.1", "10.3.0.1", 7000, 6, "", 4, 0), edge("10.3.0.1", "10.3.0.2", 7001, 6, "", 4, 0)}
	opt.Granularity = GranularityWorkload
	wrec := Recommend(wedges, nil, m, opt)
	if len(wrec.Rules) != 1 || wrec.Rules[0].Name != "app.batch-to-app.app-tier" || wrec.Rules[0].Ports[0] != "7000/tcp" {
		t.Errorf("workload rules = %+v, want one app.batch-to-app.app-tier on 7000/tcp", wrec.Rules)
	}

	// Stable once the history is long enough and every port is old.
	opt = DefaultRecommendOptions(query.Window{From: t0.Add(-10 * 24 * time.Hour), To: t0.Add(5 * 24 * time.Hour)})
	srec := Recommend([]query.ServiceEdge{edge("10.1.0.1", "10.3.0.1", 8080, 6, "", 1, -9*24*time.Hour),
		edge("10.1.0.1", "10.2.0.1", 5432, 6, "", 1, -9*24*time.Hour), edge("10.1.0.1", "10.2.0.1", 6432, 6, "", 1, 4*24*time.Hour)}, nil, m, opt)
	if srec.Rules[0].Status != StatusStable || srec.Rules[1].Status != StatusLearning {
		t.Errorf("statuses %s and %s (new port 6432), want stable and learning", srec.Rules[0].Status, srec.Rules[1].Status)
	}

	// The policy format is a valid policy holding the rules, byte-identical on re-runs.
	var a, b bytes.Buffer
	if err := WritePolicy(&a, m.Policy(), rec); err != nil {
		t.Fatal(err)
	}
	if err := WritePolicy(&b, m.Policy(), Recommend(edges, alerts, m, DefaultRecommendOptions(win))); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Error("policy output differs between two runs")
	}
	p, err := policy.Parse(a.Bytes(), "recommended.yaml")
	if err != nil {
		t.Fatalf("recommended policy does not parse: %v\n%s", err, a.String())
	}
	if len(p.Rules) != 3 || p.Rules[2].Ports[0] != (policy.PortSpec{Lo: 9000, Hi: 9019, Proto: 6}) {
		t.Errorf("parsed rules = %+v", p.Rules)
	}
}

func TestSimulate(t *testing.T) {
	active := compile(t, testPolicy+`rules:
  - name: app-to-db
    from: [app]
    to: [db]
    ports: ["5432/tcp"]
  - name: web-to-app
    from: [web]
    to: [app]
    ports: ["8000-8100/tcp"]
    identities: [alice]
`)
	_ = active
	draft := compile(t, testPolicy+`rules:
  - name: web-to-app
    from: [web]
    to: [app]
    ports: ["8080/tcp"]
    identities: [alice]
  - name: web-to-db
    from: [web]
    to: [db]
    ports: ["5432/tcp"]
`)
	g := func(s, d string, sp, dp uint16, reply bool, svc uint16, sid, did, verdict, rule string, flows uint64) query.ReplayGroup {
		return query.ReplayGroup{SrcAddr: ip(s), DstAddr: ip(d), SrcPort: sp, DstPort: dp, Proto: 6, Reply: reply, ServicePort: svc,
			SrcIdentity: sid, DstIdentity: did, Verdict: verdict, Rule: rule, Flows: flows, Bytes: flows * 10}
	}
	groups := []query.ReplayGroup{
		g("10.3.0.1", "10.2.0.1", 5433, 5432, false, 5432, "svc-app", "", "allowed", "app-to-db", 10),
		g("10.2.0.1", "10.3.0.1", 5432, 5433, true, 5432, "", "svc-app", "allowed", "app-to-db", 9), // replies
		g("10.1.0.1", "10.3.0.1", 8101, 8080, false, 8080, "alice", "svc-app", "allowed", "web-to-app", 5),
		g("10.1.0.2", "10.3.0.1", 8101, 8080, false, 8080, "", "svc-app", "violation", "", 4), // identity unknown
		g("10.1.0.1", "10.2.0.1", 8101, 5432, false, 5432, "alice", "", "violation", "", 3),
		g("10.1.0.1", "10.1.0.2", 8101, 22, false, 22, "", "", "intra_segment", "", 7),
		g("10.1.0.1", "10.2.0.1", 8101, 22, false, 22, "", "", "unknown", "", 1),
	}
	sim, err := Simulate(groups, draft, SimulateOptions{Window: win})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(sim.Summary, SimSummary{NewlyBlocked: 19, NewlyAllowed: 3, Unchanged: 16, Uncertain: 1}); d != "" {
		t.Errorf("summary (-got +want):\n%s", d)
	}
	type short struct {
		Outcome, Src, Dst string
		Port              uint16
		Ident, Reason     string
		Flows, Replies    uint64
	}
	var got []short
	for _, c := range sim.Changes {
		got = append(got, short{c.Outcome, c.SrcSegment, c.DstSegment, c.DstPort, c.SrcIdentity, c.Reason, c.Flows, c.Replies})
	}
	want := []short{
		{NewlyBlocked, "app", "db", 5432, "svc-app", "", 19, 9},
		{NewlyAllowed, "web", "db", 5432, "alice", "", 3, 0},
		{Uncertain, "web", "db", 22, "", "verdict unknown", 1, 0},
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("changes (-got +want):\n%s", d)
	}
	// The identity-unknown group was a violation and stays one: unchanged,
	// so only the summary shows it — unless the draft's rule would need an
	// identity it lacks on a flow that passed.
	groups[3].Verdict, groups[3].Rule = "allowed", "default"
	sim, _ = Simulate(groups, draft, SimulateOptions{Window: win})
	found := false
	for _, c := range sim.Changes {
		found = found || (c.Reason == "identity unknown" && c.DstSegment == "app" && c.Flows == 4)
	}
	if sim.Summary.Uncertain != 5 || !found {
		t.Errorf("summary %+v, changes %+v: want the 4 unattributed web→app flows uncertain", sim.Summary, sim.Changes)
	}

	if d := cmp.Diff(PortBounds(draft.Policy()), []uint16{1024, 5432, 5433, 8080, 8081}); d != "" {
		t.Errorf("PortBounds (-got +want):\n%s", d)
	}
}
