package enrich

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/policy/policytest"
	"github.com/flowaudit/flowaudit/schemas"
)

// session returns a session event of source (Binding start or stop).
func session(source, addr, user, device, id string, b schemas.Binding, t uint64) *schemas.AccessEvent {
	ev := &schemas.AccessEvent{Time: t, Source: source, Host: "h", User: user, Device: device, SessionID: id, Binding: b, Outcome: schemas.OutcomeSuccess}
	if addr != "" {
		ev.SrcAddr = ipAddr(addr)
	}
	return ev
}

// at is one expectation: the src end of a flow from addr at time t.
type at struct {
	addr              string
	t                 uint64
	user, src, device string
}

// TestIdentitySources: precedence (a session beats the inventory's static
// service account), overlap (the latest start wins, the earlier session
// shows again when the later one stops), exact ends (stop and lease
// expiry: a flow at the end's nanosecond is no longer attributed),
// session-only stops (in and out of order) and devices beside users.
func TestIdentitySources(t *testing.T) {
	const T = 1_796_173_200 * sec
	m := compilePolicy(t, enrichPolicy)
	lease := func(addr, mac string, start, expires uint64) *schemas.AccessEvent {
		ev := session("dhcp", addr, "", mac, "", schemas.BindingStart, start)
		ev.Expires = expires
		return ev
	}
	for _, tc := range []struct {
		name   string
		events []*schemas.AccessEvent
		want   []at
	}{
		{
			name: "a VPN session beats the inventory service account, which returns after the stop",
			events: []*schemas.AccessEvent{
				session("openvpn", "10.2.0.10", "alice", "", "alice/198.51.100.7:5000", schemas.BindingStart, T),
				session("openvpn", "", "alice", "", "alice/198.51.100.7:5000", schemas.BindingStop, T+60*sec),
			},
			want: []at{
				{"10.2.0.10", T - 1, "svc-orders", "inventory", ""},
				{"10.2.0.10", T, "alice", "openvpn", ""},
				{"10.2.0.10", T + 60*sec - 1, "alice", "openvpn", ""},
				{"10.2.0.10", T + 60*sec, "svc-orders", "inventory", ""},
			},
		},
		{
			name: "a DHCPv6 release naming only the client's DUID ends the leases of that DUID",
			events: []*schemas.AccessEvent{
				session("dhcp", "2001:db8:10::5", "", "00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:03", "00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:03", schemas.BindingStart, T),
				session("dhcp", "2001:db8:10::6", "", "00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:03", "00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:03", schemas.BindingStart, T),
				session("dhcp", "2001:db8:10::7", "", "00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:04", "00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:04", schemas.BindingStart, T),
				session("dhcp", "", "", "00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:03", "00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:03", schemas.BindingStop, T+60*sec),
			},
			want: []at{
				{"2001:db8:10::5", T + 60*sec - 1, "", "dhcp", "00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:03"},
				{"2001:db8:10::5", T + 60*sec, "", "", ""},
				{"2001:db8:10::6", T + 60*sec, "", "", ""},
				{"2001:db8:10::7", T + 60*sec, "", "dhcp", "00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:04"},
			},
		},
		{
			name: "overlapping sessions: the latest start wins until it stops",
			events: []*schemas.AccessEvent{
				session("radius", "10.1.0.5", "alice", "02:00:5e:10:00:01", "r1", schemas.BindingStart, T),
				session("windows", "10.1.0.5", `EXAMPLE\bob`, "", "0x3e7", schemas.BindingStart, T+10*sec),
				session("windows", "", `EXAMPLE\bob`, "", "0x3e7", schemas.BindingStop, T+20*sec),
				session("radius", "10.1.0.5", "alice", "", "r1", schemas.BindingStop, T+30*sec),
			},
			want: []at{
				{"10.1.0.5", T + 5*sec, "alice", "radius", "02:00:5e:10:00:01"},
				{"10.1.0.5", T + 10*sec, `EXAMPLE\bob`, "windows", "02:00:5e:10:00:01"},
				{"10.1.0.5", T + 20*sec, "alice", "radius", "02:00:5e:10:00:01"},
				{"10.1.0.5", T + 30*sec - 1, "alice", "radius", "02:00:5e:10:00:01"},
				{"10.1.0.5", T + 30*sec, "", "", ""},
			},
		},
		{
			name: "a lease ends exactly at its expiry; the device shows without a user as dhcp",
			events: []*schemas.AccessEvent{
				lease("10.1.0.6", "02:00:5e:10:00:06 laptop-6", T, T+3600*sec),
			},
			want: []at{
				{"10.1.0.6", T - 1, "", "", ""},
				{"10.1.0.6", T, "", "dhcp", "02:00:5e:10:00:06 laptop-6"},
				{"10.1.0.6", T + 3600*sec - 1, "", "dhcp", "02:00:5e:10:00:06 laptop-6"},
				{"10.1.0.6", T + 3600*sec, "", "", ""},
			},
		},
		{
			name: "a user session and a lease on one address are independent",
			events: []*schemas.AccessEvent{
				lease("10.1.0.8", "02:00:5e:10:00:08 laptop-8", T, T+7200*sec),
				session("openvpn", "10.1.0.8", "carol", "", "c1", schemas.BindingStart, T+sec),
				session("openvpn", "", "carol", "", "c1", schemas.BindingStop, T+100*sec),
				session("dhcp", "10.1.0.8", "", "02:00:5e:10:00:08", "", schemas.BindingStop, T+200*sec),
			},
			want: []at{
				{"10.1.0.8", T + 50*sec, "carol", "openvpn", "02:00:5e:10:00:08 laptop-8"},
				{"10.1.0.8", T + 150*sec, "", "dhcp", "02:00:5e:10:00:08 laptop-8"},
				{"10.1.0.8", T + 200*sec, "", "", ""},
			},
		},
		{
			name: "a session stop that arrives before its start still ends it",
			events: []*schemas.AccessEvent{
				session("windows", "", "dave", "", "0x99", schemas.BindingStop, T+10*sec),
				session("windows", "10.1.0.9", "dave", "", "0x99", schemas.BindingStart, T),
			},
			want: []at{
				{"10.1.0.9", T + 9*sec, "dave", "windows", ""},
				{"10.1.0.9", T + 10*sec, "", "", ""},
			},
		},
		{
			name: "a stop of another host's session of the same ID ends nothing",
			events: []*schemas.AccessEvent{
				session("windows", "10.1.0.11", "erin", "", "0x5", schemas.BindingStart, T),
				func() *schemas.AccessEvent {
					ev := session("windows", "", "erin", "", "0x5", schemas.BindingStop, T+sec)
					ev.Host = "other-dc"
					return ev
				}(),
			},
			want: []at{{"10.1.0.11", T + 2*sec, "erin", "windows", ""}},
		},
		{
			name: "a TTL login (kerberos) and a later VPN session: latest start, then the login again",
			events: []*schemas.AccessEvent{
				{Time: T, Source: "kerberos", User: "frank@EXAMPLE.COM", SrcAddr: ipAddr("2001:db8:1::5"), Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess},
				session("openvpn", "2001:db8:1::5", "gina", "", "g", schemas.BindingStart, T+sec),
				session("openvpn", "2001:db8:1::5", "gina", "", "g", schemas.BindingStop, T+2*sec),
			},
			want: []at{
				{"2001:db8:1::5", T + sec, "gina", "openvpn", ""},
				{"2001:db8:1::5", T + 2*sec, "frank@EXAMPLE.COM", "kerberos", ""},
			},
		},
		{
			name: "a failed logon binds nothing; an untrusted session binds nothing",
			events: []*schemas.AccessEvent{
				{Time: T, Source: "windows", User: "mallory", SrcAddr: ipAddr("10.1.0.12"), Action: schemas.ActionLogin, Outcome: schemas.OutcomeFailure},
				func() *schemas.AccessEvent {
					ev := session("openvpn", "10.1.0.12", "mallory", "", "m", schemas.BindingStart, T)
					ev.Untrusted = true
					return ev
				}(),
			},
			want: []at{{"10.1.0.12", T + sec, "", "", ""}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := NewIdentityStore(8 * time.Hour)
			for _, ev := range tc.events {
				ids.Observe(ev)
			}
			e := NewEnricher(m, ids)
			var got, want []string
			for _, w := range tc.want {
				b := &schemas.FlowBatch{TimeReceived: w.t, Flows: []schemas.Flow{{TimeStart: w.t, SrcAddr: ipAddr(w.addr), DstAddr: ipAddr("192.0.2.1"), SrcPort: 40000, DstPort: 443, Proto: 6}}}
				var r Result
				e.EnrichFlow(b, &b.Flows[0], &r)
				got = append(got, fmt.Sprintf("%s@%d: %q %q %q", w.addr, w.t-T, r.SrcIdentity, r.SrcIdentitySource, r.SrcDevice))
				want = append(want, fmt.Sprintf("%s@%d: %q %q %q", w.addr, w.t-T, w.user, w.src, w.device))
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// mixedSources returns BenchmarkEnrich's policy and a store of 1M
// bindings from mixed sources: VPN and RADIUS sessions (half of them with
// a device), DHCP leases (device only) and Kerberos logins, on 1M
// distinct addresses, some holding two of them; half IPv4 in 10/8, half anywhere in the
// policy's CIDRs (IPv6 included). It also returns a batch of 64k flows
// whose sources are bound one time in two, in the hour after the binds,
// and the bound addresses.
func mixedSources(b *testing.B) (*policy.Matcher, *IdentityStore, *schemas.FlowBatch, []schemas.Addr) {
	b.Helper()
	syn := policytest.New(policytest.Options{Seed: 1})
	m, err := policy.Compile(syn.Policy)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	ids := NewIdentityStore(8 * time.Hour)
	const n = 1_000_000
	bound := make([]schemas.Addr, 0, n)
	seen := make(map[schemas.Addr]bool, n)
	for i := 0; len(bound) < n; i++ {
		var a schemas.Addr
		if i%2 == 0 {
			a = schemas.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		} else {
			a = syn.RandomAddr(r, 0)
		}
		if seen[a] {
			continue
		}
		seen[a] = true
		bound = append(bound, a)
		user := fmt.Sprintf("user%d", i%5000)
		switch i % 4 {
		case 0:
			ids.Observe(&schemas.AccessEvent{Time: mixedT, Source: "openvpn", Host: "vpn", User: user, SrcAddr: a, SessionID: fmt.Sprint(i), Binding: schemas.BindingStart, Outcome: schemas.OutcomeSuccess})
		case 1:
			ids.Observe(&schemas.AccessEvent{Time: mixedT, Source: "radius", Host: "r", User: user, Device: "02:00:5e:00:00:01", SrcAddr: a, SessionID: fmt.Sprint(i), Binding: schemas.BindingStart, Outcome: schemas.OutcomeSuccess})
		case 2:
			ids.Observe(&schemas.AccessEvent{Time: mixedT, Source: "dhcp", Device: "02:00:5e:00:00:02", SrcAddr: a, Binding: schemas.BindingStart, Expires: mixedT + 8*3600*sec, Outcome: schemas.OutcomeSuccess})
			if i%8 == 2 {
				ids.Observe(&schemas.AccessEvent{Time: mixedT + sec, Source: "kerberos", User: user, SrcAddr: a, Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess})
			}
		default:
			ids.Observe(&schemas.AccessEvent{Time: mixedT, Source: "kerberos", User: user, SrcAddr: a, Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess})
		}
	}
	batch := &schemas.FlowBatch{TimeReceived: mixedT + 3600*sec, Flows: make([]schemas.Flow, 1<<16)}
	for i := range batch.Flows {
		f := &batch.Flows[i]
		if r.IntN(2) == 0 {
			f.SrcAddr = bound[r.IntN(len(bound))]
		} else {
			f.SrcAddr = syn.RandomAddr(r, 0.1)
		}
		f.DstAddr = syn.RandomAddr(r, 0.1)
		f.SrcPort, f.DstPort, f.Proto = uint16(32768+r.IntN(28000)), 443, 6
		f.TimeStart = mixedT + uint64(r.IntN(3600))*sec
	}
	if got := ids.Len(); got != n {
		b.Fatalf("%d addresses bound, want %d", got, n)
	}
	runtime.GC() // the set-up's garbage, not the loop's
	return m, ids, batch, bound
}

const mixedT = 1_796_173_200 * sec

// BenchmarkEnrichMixedSources is the whole enrichment (segment +
// workload + identity + verdict, BenchmarkEnrich's policy) of flows the
// way the batcher does it (EnrichFlows, 64 flows at a time), with 1M
// bindings from mixed sources (mixedSources). The binding table changes
// while flows are enriched: one Kerberos login of a bound address
// (interned, a new event in its history) every 1,024 flows, about 3,000
// access events per second at 3M flows/s — more than 1M bindings with
// an 8h ttl and interim updates every few minutes bring. Run with -cpu=1:
// the target is ≥ 3M flows/s per core.
func BenchmarkEnrichMixedSources(b *testing.B) {
	m, ids, batch, bound := mixedSources(b)
	e := NewEnricher(m, ids)
	res := make([]Result, enrichGroup)
	users := make([]string, 64)
	for i := range users {
		users[i] = fmt.Sprintf("user%d", i)
	}
	ev := schemas.AccessEvent{Source: "kerberos", Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess}
	b.ReportAllocs()
	k := 0
	for i := 0; b.Loop(); i++ {
		first := (i * enrichGroup) & (1<<16 - 1)
		e.EnrichFlows(batch, batch.Flows[first:first+enrichGroup], res)
		k += enrichGroup
		if i%16 == 0 {
			ev.Time, ev.User, ev.SrcAddr = mixedT+uint64(i%3600)*sec, users[i%64], bound[(i*7919)%len(bound)]
			ids.Observe(&ev)
		}
	}
	b.ReportMetric(float64(k)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(k), "ns/flow")
}

// BenchmarkIdentityJoin is the identity join alone: both ends of each
// flow looked up (IdentityStore.LookupFlows, 64 flows at a time) in 1M
// bindings from mixed sources (mixedSources).
func BenchmarkIdentityJoin(b *testing.B) {
	_, ids, batch, _ := mixedSources(b)
	out := make([]FlowBindings, enrichGroup)
	b.ReportAllocs()
	k, users := 0, 0
	for i := 0; b.Loop(); i++ {
		first := (i * enrichGroup) & (1<<16 - 1)
		ids.LookupFlows(batch, batch.Flows[first:first+enrichGroup], out)
		k += enrichGroup
		if out[0].Src.User != "" {
			users++
		}
	}
	b.ReportMetric(float64(k)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(k), "ns/flow")
	_ = users
}

// TestIdentitySessionsBounded: request IDs of events without an explicit
// session (Kubernetes audit IDs, gateway sessions) are not tracked; stops
// of explicit sessions forget them.
func TestIdentitySessionsBounded(t *testing.T) {
	const T = 1_796_173_200 * sec
	s := NewIdentityStore(time.Hour)
	for i := range 1000 {
		s.Observe(&schemas.AccessEvent{Time: T + uint64(i), Source: "k8s_audit", User: "alice", SrcAddr: ipAddr("10.1.0.5"), SessionID: fmt.Sprint(i), Action: "get", Outcome: schemas.OutcomeSuccess})
	}
	s.Observe(session("openvpn", "10.1.0.6", "bob", "", "b", schemas.BindingStart, T))
	if n := len(s.sessions); n != 1 {
		t.Fatalf("%d sessions tracked, want 1", n)
	}
	s.Observe(session("openvpn", "", "bob", "", "b", schemas.BindingStop, T+sec))
	if n := len(s.sessions); n != 0 {
		t.Fatalf("%d sessions after the stop, want 0", n)
	}
	if n := s.Expire(T + 3*3600*sec); n == 0 || len(s.stopped) != 0 {
		t.Fatalf("Expire dropped %d bindings, %d stops kept", n, len(s.stopped))
	}
}

// TestRADIUSNASRestart: an Accounting-On/Off ends, at its time, every
// session its NAS (by address or by name) reported, including a start
// from before it that arrives after it; other NASes' sessions and later
// sessions stay bound.
func TestRADIUSNASRestart(t *testing.T) {
	const T = 1_796_173_200 * sec
	nas := func(ev *schemas.AccessEvent, addr, name string) *schemas.AccessEvent {
		if addr != "" {
			ev.DstAddr = ipAddr(addr)
		}
		ev.DstHost = name
		return ev
	}
	restart := func(addr, name string, t uint64) *schemas.AccessEvent {
		return nas(&schemas.AccessEvent{Time: t, Source: "radius", Host: "h", Binding: schemas.BindingStop, Action: schemas.ActionNASRestart, Outcome: schemas.OutcomeSuccess}, addr, name)
	}
	s := NewIdentityStore(8 * time.Hour)
	s.Observe(nas(session("radius", "10.1.0.5", "alice", "02:00:5e:00:00:05", "a", schemas.BindingStart, T), "192.0.2.1", "ap-1"))
	s.Observe(nas(session("radius", "2001:db8::6", "bob", "", "b", schemas.BindingStart, T+10*sec), "192.0.2.1", ""))
	s.Observe(nas(session("radius", "10.1.0.7", "carol", "", "c", schemas.BindingStart, T), "192.0.2.2", "ap-2"))
	s.Observe(nas(session("radius", "10.1.0.9", "erin", "", "e", schemas.BindingStart, T), "", "ap-1"))
	s.Observe(restart("192.0.2.1", "", T+100*sec))
	s.Observe(restart("", "ap-1", T+110*sec))
	// A start from before the restart, arriving after it; a session after it.
	s.Observe(nas(session("radius", "10.1.0.8", "dave", "", "d", schemas.BindingStart, T+50*sec), "192.0.2.1", "ap-1"))
	s.Observe(nas(session("radius", "10.1.0.10", "frank", "", "f", schemas.BindingStart, T+200*sec), "192.0.2.1", "ap-1"))
	for _, p := range []struct {
		addr string
		t    uint64
		want Binding
	}{
		{"10.1.0.5", T + 99*sec, Binding{User: "alice", Source: "radius", Device: "02:00:5e:00:00:05", DeviceSource: "radius"}},
		{"10.1.0.5", T + 100*sec, Binding{}},
		{"2001:db8::6", T + 99*sec, Binding{User: "bob", Source: "radius"}},
		{"2001:db8::6", T + 100*sec, Binding{}},
		{"10.1.0.7", T + 300*sec, Binding{User: "carol", Source: "radius"}},
		{"10.1.0.9", T + 109*sec, Binding{User: "erin", Source: "radius"}},
		{"10.1.0.9", T + 110*sec, Binding{}},
		{"10.1.0.8", T + 99*sec, Binding{User: "dave", Source: "radius"}},
		{"10.1.0.8", T + 100*sec, Binding{}},
		{"10.1.0.10", T + 300*sec, Binding{User: "frank", Source: "radius"}},
	} {
		if diff := cmp.Diff(s.LookupBinding(ipAddr(p.addr), p.t), p.want); diff != "" {
			t.Errorf("%s at +%ds (-got +want):\n%s", p.addr, (p.t-T)/sec, diff)
		}
	}
}

// TestPodLabelSelectors: the labels of a pod bound from k8s_pods are
// matched by the policy's label selectors while the pod holds its
// address (and only then), through EnrichFlow and EnrichFlows; Expire
// forgets the labels of pods no longer bound.
func TestPodLabelSelectors(t *testing.T) {
	const T = 1_796_173_200 * sec
	m := compilePolicy(t, `
segments:
  - name: pods
    cidrs: [10.244.0.0/16, "fd00:244::/32"]
  - name: db
    cidrs: [10.2.0.0/16]
rules:
  - name: web-pods-to-db
    from: [{segment: pods, labels: {app: web}}]
    to: [db]
    ports: ["5432/tcp"]
default: deny
`)
	s := NewIdentityStore(time.Hour)
	pod := func(addr, name, labels string, b schemas.Binding, t uint64) *schemas.AccessEvent {
		ev := session("k8s_pods", addr, "system:serviceaccount:prod:web", "prod/"+name, "uid-"+name, b, t)
		ev.Labels = labels
		return ev
	}
	s.Observe(pod("10.244.1.1", "web-1", "app=web,pod-template-hash=6d4", schemas.BindingStart, T))
	s.Observe(pod("fd00:244:1::2", "web-2", "app=web", schemas.BindingStart, T))
	s.Observe(pod("10.244.1.3", "api-1", "app=api", schemas.BindingStart, T))
	s.Observe(pod("", "web-1", "", schemas.BindingStop, T+60*sec))
	e := NewEnricher(m, s)
	batch := &schemas.FlowBatch{TimeReceived: T}
	flow := func(src string, t uint64) schemas.Flow {
		return schemas.Flow{TimeStart: t, SrcAddr: ipAddr(src), DstAddr: ipAddr("10.2.0.10"), SrcPort: 40000, DstPort: 5432, Proto: 6}
	}
	batch.Flows = []schemas.Flow{flow("10.244.1.1", T+sec), flow("fd00:244:1::2", T+sec), flow("10.244.1.3", T+sec), flow("10.244.1.1", T+60*sec), flow("10.244.1.9", T+sec)}
	want := []string{"allowed web-pods-to-db", "allowed web-pods-to-db", "violation ", "violation ", "violation "}
	res := make([]Result, len(batch.Flows))
	e.EnrichFlows(batch, batch.Flows, res)
	for i := range batch.Flows {
		var r Result
		e.EnrichFlow(batch, &batch.Flows[i], &r)
		for _, got := range []string{r.Verdict.String() + " " + r.Rule, res[i].Verdict.String() + " " + res[i].Rule} {
			if got != want[i] {
				t.Errorf("flow %d from %v: %q, want %q", i, batch.Flows[i].SrcAddr, got, want[i])
			}
		}
	}
	if got := s.LookupBinding(ipAddr("fd00:244:1::2"), T+sec).Labels; got != "app=web" {
		t.Errorf("labels = %q", got)
	}
	// web-1's binding expires one ttl after its stop; its labels go with it.
	s.Expire(T + 60*sec + 2*3600*sec)
	s.labelsMu.RLock()
	n := len(s.labels)
	s.labelsMu.RUnlock()
	if n != 0 {
		t.Errorf("%d labels kept after every binding expired, want 0", n)
	}
}
