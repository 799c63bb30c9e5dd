package enrich

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// randomAccessEvent returns one of the events the sources send, about
// addrs, within 4h after T.
func randomAccessEvent(r *rand.Rand, addrs []schemas.Addr, T uint64) *schemas.AccessEvent {
	users := []string{"alice", "bob", "carol", "", "svc-7"}
	devices := []string{"02:00:5e:00:00:01", "02:00:5e:00:00:02", ""}
	names := []string{"laptop", "", "phone x"}
	sources := []string{"openvpn", "radius", "dhcp", "kerberos", "sshd"}
	ev := &schemas.AccessEvent{
		Time:    T + uint64(r.IntN(4*3600))*sec,
		Source:  sources[r.IntN(len(sources))],
		Host:    "h",
		User:    users[r.IntN(len(users))],
		SrcAddr: addrs[r.IntN(len(addrs))],
		Outcome: schemas.OutcomeSuccess,
	}
	switch r.IntN(8) {
	case 0, 1: // a session start or stop
		ev.SessionID = fmt.Sprint(r.IntN(6))
		ev.Binding = schemas.BindingStart
		if r.IntN(3) == 0 {
			ev.Binding = schemas.BindingStop
			if r.IntN(2) == 0 {
				ev.SrcAddr = schemas.Addr{} // a stop naming only its session
			}
		}
		ev.Device = devices[r.IntN(len(devices))]
	case 2: // a lease or its release
		ev.Binding = schemas.BindingStart
		ev.User = ""
		ev.Device, ev.DeviceName = devices[r.IntN(2)], names[r.IntN(len(names))]
		ev.Expires = ev.Time + uint64(r.IntN(7200))*sec
		if r.IntN(3) == 0 {
			ev.Binding, ev.Expires, ev.DeviceName = schemas.BindingStop, 0, ""
		}
	case 3:
		ev.Action = schemas.ActionLogout
	case 4:
		ev.Action = schemas.ActionLogin
		ev.Outcome = schemas.OutcomeFailure
	case 5:
		ev.Binding = schemas.BindingUpdate
		ev.Device = devices[r.IntN(len(devices))]
	default:
		ev.Action = schemas.ActionLogin
	}
	if r.IntN(20) == 0 {
		ev.Untrusted = true
	}
	return ev
}

// TestIdentityStoreMatchesReference: the store answers every lookup as
// the map-based store it replaced did (identity_ref_test.go), through
// LookupBinding and LookupFlows, IPv4 and IPv6, with expiry in between.
func TestIdentityStoreMatchesReference(t *testing.T) {
	const T = 1_796_173_200 * sec
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 1))
		var addrs []schemas.Addr
		for i := range 6 {
			addrs = append(addrs, ipAddr(fmt.Sprintf("10.1.0.%d", i+1)), ipAddr(fmt.Sprintf("2001:db8::%x", i+1)))
		}
		got, want := NewIdentityStore(time.Hour), newRefStore(time.Hour)
		for step := range 300 {
			ev := randomAccessEvent(r, addrs, T)
			got.Observe(ev)
			want.Observe(ev)
			if step%100 == 99 {
				now := T + uint64(r.IntN(6*3600))*sec
				if g, w := got.Expire(now), want.Expire(now); g != w {
					t.Fatalf("seed %d step %d: Expire dropped %d, reference %d", seed, step, g, w)
				}
			}
			if step%10 != 9 {
				continue
			}
			batch := &schemas.FlowBatch{TimeReceived: T}
			for range 40 {
				batch.Flows = append(batch.Flows, schemas.Flow{
					SrcAddr: addrs[r.IntN(len(addrs))], DstAddr: addrs[r.IntN(len(addrs))],
					TimeStart: T + uint64(r.IntN(5*3600))*sec,
				})
			}
			out := make([]FlowBindings, len(batch.Flows))
			got.LookupFlows(batch, batch.Flows, out)
			for i := range batch.Flows {
				f := &batch.Flows[i]
				ws, wd := want.LookupBinding(f.SrcAddr, f.TimeStart), want.LookupBinding(f.DstAddr, f.TimeStart)
				if diff := cmp.Diff(got.LookupBinding(f.SrcAddr, f.TimeStart), ws); diff != "" {
					t.Fatalf("seed %d step %d: LookupBinding(%v, %d) (-got +want):\n%s", seed, step, f.SrcAddr, (f.TimeStart-T)/sec, diff)
				}
				if diff := cmp.Diff(out[i], FlowBindings{Src: ws, Dst: wd}); diff != "" {
					t.Fatalf("seed %d step %d: LookupFlows %v→%v at %d (-got +want):\n%s", seed, step, f.SrcAddr, f.DstAddr, (f.TimeStart-T)/sec, diff)
				}
			}
		}
		if g, w := got.Len(), want.Len(); g != w {
			t.Fatalf("seed %d: Len %d, reference %d", seed, g, w)
		}
	}
}

// TestIdentityTableGrowsAndForgets: the table grows past many addresses
// (IPv4 and IPv6), finds every one, forgets the expired ones (tombstones)
// and takes new ones in their place.
func TestIdentityTableGrowsAndForgets(t *testing.T) {
	const T = 1_796_173_200 * sec
	const n = 50_000
	s := NewIdentityStore(time.Hour)
	addr := func(i int) schemas.Addr {
		if i%2 == 0 {
			return schemas.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		}
		return ipAddr(fmt.Sprintf("2001:db8::%x:%x", i>>16, i&0xffff))
	}
	user := func(i int) string { return fmt.Sprintf("user%d", i) }
	for i := range n {
		s.Observe(&schemas.AccessEvent{Time: T, Source: "radius", User: user(i), SrcAddr: addr(i), Binding: schemas.BindingStart, Expires: T + uint64(1+i%2)*3600*sec})
	}
	if got := s.Len(); got != n {
		t.Fatalf("Len %d, want %d", got, n)
	}
	expired := false
	check := func(from, to int, at uint64, bound bool) {
		t.Helper()
		for i := from; i < to; i++ {
			want := ""
			if bound && (i >= n || i%2 == 1 || !expired) {
				want = user(i)
			}
			if got := s.Lookup(addr(i), at); got != want {
				t.Fatalf("Lookup(%v) = %q, want %q", addr(i), got, want)
			}
		}
	}
	check(0, n, T+1800*sec, true)
	// The leases of even addresses ended at T+1h: dropped one ttl later.
	if got := s.Expire(T + 2*3600*sec + sec); got != n/2 {
		t.Fatalf("Expire dropped %d, want %d", got, n/2)
	}
	if got := s.Len(); got != n/2 {
		t.Fatalf("Len %d after Expire, want %d", got, n/2)
	}
	expired = true
	check(0, n, T+1800*sec, true)
	for i := n; i < 2*n; i++ {
		s.Observe(&schemas.AccessEvent{Time: T, Source: "radius", User: user(i), SrcAddr: addr(i), Binding: schemas.BindingStart, Expires: T + 3*3600*sec})
	}
	if got := s.Len(); got != n/2+n {
		t.Fatalf("Len %d, want %d", got, n/2+n)
	}
	check(0, 2*n, T+1800*sec, true)
	check(0, 2*n, T-sec, false)
}

// TestStringPool: equal names share a ref, long ones are cut at a rune
// boundary, and strings handed out stay valid as the pool grows.
func TestStringPool(t *testing.T) {
	p := newStringPool()
	a := p.intern("alice")
	first := p.str(a)
	var refs []strRef
	for i := range 300_000 { // several chunks
		refs = append(refs, p.intern(fmt.Sprintf("name-%d-%s", i, "x")))
	}
	if p.intern("alice") != a || first != "alice" || p.str(a) != "alice" {
		t.Fatalf("alice: %v %q", p.intern("alice") == a, first)
	}
	for i, r := range refs {
		if got, want := p.str(r), fmt.Sprintf("name-%d-x", i); got != want {
			t.Fatalf("str = %q, want %q", got, want)
		}
	}
	long := string(make([]byte, poolMaxString-1)) + "é"
	if got := p.str(p.intern(long)); len(got) != poolMaxString-1 {
		t.Fatalf("long name kept %d bytes, want %d", len(got), poolMaxString-1)
	}
	if p.intern("") != 0 || p.str(0) != "" {
		t.Fatal("empty string")
	}
}

// TestStringPoolCompaction: Expire copies the names still referenced into
// a new pool once the old one has grown enough, dropping the names of
// bindings that ended; users, devices, sources, labels and sessions read
// the same afterwards.
func TestStringPoolCompaction(t *testing.T) {
	defer func(n int) { poolCompactMin = n }(poolCompactMin)
	poolCompactMin = 1 << 10
	const T = 1_796_173_200 * sec
	s := NewIdentityStore(time.Hour)
	for i := range 5000 { // short leases with names of their own
		s.Observe(&schemas.AccessEvent{Time: T, Source: "dhcp", Device: fmt.Sprintf("02:00:5e:00:%02x:%02x", i>>8, i&0xff), DeviceName: fmt.Sprintf("host-%d", i),
			SrcAddr: schemas.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), Binding: schemas.BindingStart, Expires: T + 60*sec, Outcome: schemas.OutcomeSuccess})
	}
	pod := session("k8s_pods", "fd00:244::5", "system:serviceaccount:prod:web", "prod/web-1", "uid-1", schemas.BindingStart, T)
	pod.Labels = "app=web"
	s.Observe(pod)
	s.Observe(session("radius", "10.1.0.5", "alice", "02:00:5e:10:00:01", "r1", schemas.BindingStart, T))
	s.Observe(&schemas.AccessEvent{Time: T + 10*sec, Source: "kerberos", User: "bob@EXAMPLE.ORG", SrcAddr: ipAddr("10.1.0.5"), Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess})
	before := s.pool.bytes
	s.Expire(T + 60*sec + 3600*sec + sec) // the leases are gone
	if after := s.pool.bytes; after*10 > before {
		t.Fatalf("pool holds %d bytes after compaction, %d before", after, before)
	}
	want := map[string]Binding{
		"fd00:244::5": {User: "system:serviceaccount:prod:web", Source: "k8s_pods", Device: "prod/web-1", DeviceSource: "k8s_pods", Labels: "app=web"},
		"10.1.0.5":    {User: "bob@EXAMPLE.ORG", Source: "kerberos", Device: "02:00:5e:10:00:01", DeviceSource: "radius"},
		"10.9.0.5":    {},
	}
	for a, w := range want {
		if diff := cmp.Diff(s.LookupBinding(ipAddr(a), T+30*sec), w); diff != "" {
			t.Errorf("%s (-got +want):\n%s", a, diff)
		}
	}
	// The session still stops by its ID, naming its user in the new pool.
	s.Observe(session("radius", "", "alice", "", "r1", schemas.BindingStop, T+40*sec))
	if got := s.LookupBinding(ipAddr("10.1.0.5"), T+50*sec); got.Device != "" || got.User != "bob@EXAMPLE.ORG" {
		t.Errorf("after the session's stop: %+v", got)
	}
	s.compactPool(true) // a second copy keeps every name
	if got := s.LookupBinding(ipAddr("fd00:244::5"), T+30*sec); got.Labels != "app=web" || got.Device != "prod/web-1" {
		t.Errorf("after a second compaction: %+v", got)
	}
}
