package enrich

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/policy/policytest"
	"github.com/flowaudit/flowaudit/schemas"
)

const enrichPolicy = `
segments:
  - name: web
    cidrs: [10.1.0.0/16, "2001:db8:1::/48"]
  - name: db
    cidrs: [10.2.0.0/16]
    tags: [pci-cde, sensitive]
  - name: jump
    cidrs: [10.3.0.0/24]
inventory:
  - cidr: 10.2.0.10/32
    workload: orders-db
    owner: payments
    service_account: svc-orders
  - cidr: 10.1.0.7/32
    workload: api
    service_account: svc-api
rules:
  - name: web-to-db-postgres
    from: [web]
    to: [db]
    ports: ["5432/tcp"]
  - name: jump-ssh
    from: [jump]
    to: [db]
    ports: ["22/tcp"]
    identities: [alice]
default: deny
`

func compilePolicy(t testing.TB, src string) *policy.Matcher {
	t.Helper()
	p, err := policy.Parse([]byte(src), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEnrichFlow(t *testing.T) {
	const T = 1_700_000_000 * sec
	ids := NewIdentityStore(8 * time.Hour)
	ids.Observe(login("10.1.0.5", "alice", T+100*sec)) // sshd accept on a web host
	ids.Observe(login("10.3.0.1", "alice", T))
	ids.Observe(ending("10.3.0.1", "alice", schemas.ActionLogout, T+500*sec))
	e := NewEnricher(compilePolicy(t, enrichPolicy), ids)

	flow := func(src, dst string, sport, dport uint16, proto uint8, start uint64) schemas.Flow {
		return schemas.Flow{SrcAddr: ipAddr(src), DstAddr: ipAddr(dst), SrcPort: sport, DstPort: dport, Proto: proto, TimeStart: start}
	}
	b := &schemas.FlowBatch{TimeReceived: T + 1000*sec, Flows: []schemas.Flow{
		flow("10.1.0.5", "10.2.0.10", 51000, 5432, 6, T+200*sec),
		flow("10.1.0.5", "10.2.0.10", 51000, 5432, 6, T+50*sec), // before alice's login
		flow("10.1.0.5", "10.2.0.10", 51000, 22, 6, T+200*sec),
		flow("10.1.0.5", "10.1.0.7", 51000, 8080, 6, T+200*sec),
		flow("192.0.2.1", "10.2.0.10", 40000, 5432, 6, T+200*sec),
		flow("10.2.0.10", "10.1.0.5", 5432, 51000, 6, T+200*sec),                                                 // reply
		flow("10.3.0.1", "10.2.0.10", 50000, 22, 6, T+200*sec),                                                   // alice on the jump host
		flow("10.3.0.1", "10.2.0.10", 50000, 22, 6, T+600*sec),                                                   // after her logout
		{SrcAddr: ipAddr("10.1.0.5"), DstAddr: ipAddr("10.2.0.1"), DstPort: 5432, Proto: 6},                      // no times: batch time
		{SrcAddr: ipAddr("10.1.0.5"), DstAddr: ipAddr("10.2.0.1"), DstPort: 5432, Proto: 6, TimeEnd: T + 90*sec}, // end time
		{DstAddr: ipAddr("10.2.0.1"), DstPort: 5432, Proto: 6, TimeStart: T},                                     // no source address
		flow("2001:db8:1::1", "10.2.0.1", 50000, 5432, 6, T),
	}}
	want := []Result{
		{SrcSegment: "web", DstSegment: "db", DstWorkload: "orders-db", SrcIdentity: "alice", SrcIdentitySource: "sshd", DstIdentity: "svc-orders", DstIdentitySource: "inventory", Verdict: policy.VerdictAllowed, Rule: "web-to-db-postgres"},
		{SrcSegment: "web", DstSegment: "db", DstWorkload: "orders-db", DstIdentity: "svc-orders", DstIdentitySource: "inventory", Verdict: policy.VerdictAllowed, Rule: "web-to-db-postgres"},
		{SrcSegment: "web", DstSegment: "db", DstWorkload: "orders-db", SrcIdentity: "alice", SrcIdentitySource: "sshd", DstIdentity: "svc-orders", DstIdentitySource: "inventory", Verdict: policy.VerdictViolation},
		{SrcSegment: "web", DstSegment: "web", DstWorkload: "api", SrcIdentity: "alice", SrcIdentitySource: "sshd", DstIdentity: "svc-api", DstIdentitySource: "inventory", Verdict: policy.VerdictIntraSegment},
		{SrcSegment: "external", DstSegment: "db", DstWorkload: "orders-db", DstIdentity: "svc-orders", DstIdentitySource: "inventory", Verdict: policy.VerdictViolation},
		{SrcSegment: "db", DstSegment: "web", SrcWorkload: "orders-db", SrcIdentity: "svc-orders", SrcIdentitySource: "inventory", DstIdentity: "alice", DstIdentitySource: "sshd", Verdict: policy.VerdictAllowed, Rule: "web-to-db-postgres"},
		{SrcSegment: "jump", DstSegment: "db", DstWorkload: "orders-db", SrcIdentity: "alice", SrcIdentitySource: "sshd", DstIdentity: "svc-orders", DstIdentitySource: "inventory", Verdict: policy.VerdictAllowed, Rule: "jump-ssh"},
		{SrcSegment: "jump", DstSegment: "db", DstWorkload: "orders-db", DstIdentity: "svc-orders", DstIdentitySource: "inventory", Verdict: policy.VerdictViolation},
		{SrcSegment: "web", DstSegment: "db", SrcIdentity: "alice", SrcIdentitySource: "sshd", Verdict: policy.VerdictAllowed, Rule: "web-to-db-postgres"},
		{SrcSegment: "web", DstSegment: "db", Verdict: policy.VerdictAllowed, Rule: "web-to-db-postgres"},
		{SrcSegment: "external", DstSegment: "db", Verdict: policy.VerdictUnknown},
		{SrcSegment: "web", DstSegment: "db", Verdict: policy.VerdictAllowed, Rule: "web-to-db-postgres"},
	}
	sides := []struct {
		side schemas.ServiceSide
		port uint16
	}{
		{schemas.ServiceDst, 5432}, {schemas.ServiceDst, 5432}, {schemas.ServiceDst, 22}, {schemas.ServiceDst, 8080},
		{schemas.ServiceDst, 5432}, {schemas.ServiceSrc, 5432}, {schemas.ServiceDst, 22}, {schemas.ServiceDst, 22},
		{schemas.ServiceDst, 5432}, {schemas.ServiceDst, 5432}, {schemas.ServiceDst, 5432}, {schemas.ServiceDst, 5432},
	}
	for i := range want {
		// No staged rules: the staged verdict is the verdict.
		want[i].StagedVerdict, want[i].StagedRule = want[i].Verdict, want[i].Rule
		want[i].ServiceSide, want[i].ServicePort = sides[i].side, sides[i].port
	}
	got := make([]Result, len(b.Flows))
	for i := range b.Flows {
		e.EnrichFlow(b, &b.Flows[i], &got[i])
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("EnrichFlow (-got +want):\n%s", diff)
	}

	// Without a policy: external/unknown, identities still bound.
	e.SetMatcher(nil)
	var r Result
	e.EnrichFlow(b, &b.Flows[0], &r)
	if diff := cmp.Diff(r, Result{SrcSegment: "external", DstSegment: "external", SrcIdentity: "alice", SrcIdentitySource: "sshd", Verdict: policy.VerdictUnknown,
		ServiceSide: schemas.ServiceDst, ServicePort: 5432}); diff != "" {
		t.Errorf("EnrichFlow without policy (-got +want):\n%s", diff)
	}
	if e.Matcher() != nil {
		t.Error("Matcher() != nil after SetMatcher(nil)")
	}

	// Hot reload: a new policy applies to the next flow.
	e.SetMatcher(compilePolicy(t, `
segments:
  - name: everything
    cidrs: [0.0.0.0/0]
`))
	e.EnrichFlow(b, &b.Flows[0], &r)
	if r.SrcSegment != "everything" || r.Verdict != policy.VerdictIntraSegment {
		t.Errorf("after reload: %+v", r)
	}

	// No identity store.
	e2 := NewEnricher(compilePolicy(t, enrichPolicy), nil)
	e2.EnrichFlow(b, &b.Flows[0], &r)
	if r.SrcIdentity != "" || r.DstIdentity != "svc-orders" {
		t.Errorf("without identities: %+v", r)
	}
}

func TestEnrichFlowAllocs(t *testing.T) {
	ids := NewIdentityStore(time.Hour)
	ids.Observe(login("10.1.0.5", "alice", 100*sec))
	e := NewEnricher(compilePolicy(t, enrichPolicy), ids)
	b := &schemas.FlowBatch{TimeReceived: 200 * sec, Flows: []schemas.Flow{{SrcAddr: ipAddr("10.1.0.5"), DstAddr: ipAddr("10.2.0.10"), DstPort: 5432, Proto: 6}}}
	var r Result
	if n := testing.AllocsPerRun(100, func() { e.EnrichFlow(b, &b.Flows[0], &r) }); n != 0 {
		t.Errorf("EnrichFlow allocates %v times per flow", n)
	}
}

// BenchmarkEnrich measures the enrichment of one flow (segment + workload
// + identity + verdict for both ends) with a policy of 10k segment CIDRs
// (IPv4 and IPv6, nested three deep, 100 segments, 300 rules), 2k
// inventory entries and 100k identity bindings; about half the flows'
// sources are bound. Run with -cpu=1: the target is ≥ 3M flows/s per core.
func BenchmarkEnrich(b *testing.B) {
	syn := policytest.New(policytest.Options{Seed: 1})
	m, err := policy.Compile(syn.Policy)
	if err != nil {
		b.Fatal(err)
	}
	const T = 1_700_000_000 * sec
	r := rand.New(rand.NewPCG(5, 6))
	ids := NewIdentityStore(8 * time.Hour)
	bound := make([]schemas.Addr, 0, 100_000)
	seen := map[schemas.Addr]bool{}
	users := []string{"alice", "bob", "carol", "svc-7", "dave", "erin"}
	for len(bound) < 100_000 {
		a := syn.RandomAddr(r, 0)
		if seen[a] {
			continue
		}
		seen[a] = true
		bound = append(bound, a)
		ids.Observe(&schemas.AccessEvent{Time: T, User: users[r.IntN(len(users))], SrcAddr: a, Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess})
	}
	if n := ids.Len(); n != 100_000 {
		b.Fatalf("%d bindings", n)
	}
	ports := []uint16{22, 53, 80, 443, 5432, 3306, 6379, 8080}
	protos := []uint8{6, 17, 6, 6, 6, 6, 6, 6}
	batch := &schemas.FlowBatch{TimeReceived: T + 3600*sec, Flows: make([]schemas.Flow, 1<<16)}
	for i := range batch.Flows {
		f := &batch.Flows[i]
		if r.IntN(2) == 0 {
			f.SrcAddr = bound[r.IntN(len(bound))]
		} else {
			f.SrcAddr = syn.RandomAddr(r, 0.1)
		}
		f.DstAddr = syn.RandomAddr(r, 0.1)
		p := r.IntN(len(ports))
		f.SrcPort, f.DstPort, f.Proto = uint16(32768+r.IntN(28000)), ports[p], protos[p]
		if r.IntN(4) == 0 { // replies
			f.SrcPort, f.DstPort = f.DstPort, f.SrcPort
		}
		f.TimeStart = T + uint64(r.IntN(3600))*sec
	}
	e := NewEnricher(m, ids)
	var res Result
	var verdicts [4]int
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		e.EnrichFlow(batch, &batch.Flows[i&(1<<16-1)], &res)
		verdicts[res.Verdict&3]++
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
	_ = verdicts
}
