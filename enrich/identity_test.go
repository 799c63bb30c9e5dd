package enrich

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

const sec = uint64(time.Second)

func ipAddr(s string) schemas.Addr {
	return schemas.AddrFromNetip(netip.MustParseAddr(s))
}

func login(addr, user string, t uint64) *schemas.AccessEvent {
	return &schemas.AccessEvent{Time: t, Source: "sshd", User: user, SrcAddr: ipAddr(addr), Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess}
}

func ending(addr, user, action string, t uint64) *schemas.AccessEvent {
	return &schemas.AccessEvent{Time: t, Source: "sshd", User: user, SrcAddr: ipAddr(addr), Action: action, Outcome: schemas.OutcomeSuccess}
}

type probe struct {
	addr string
	t    uint64
	want string
}

func checkProbes(t *testing.T, s *IdentityStore, probes []probe) {
	t.Helper()
	var got, want []string
	for _, p := range probes {
		got = append(got, fmt.Sprintf("%s@%d=%s", p.addr, p.t/sec, s.Lookup(ipAddr(p.addr), p.t)))
		want = append(want, fmt.Sprintf("%s@%d=%s", p.addr, p.t/sec, p.want))
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Lookup (-got +want):\n%s", diff)
	}
}

func TestIdentityStore(t *testing.T) {
	const T = 1_700_000_000 * sec
	for _, tc := range []struct {
		name   string
		events []*schemas.AccessEvent
		probes []probe
	}{
		{
			name:   "login binds from its time on",
			events: []*schemas.AccessEvent{login("10.1.0.5", "alice", T+100*sec)},
			probes: []probe{{"10.1.0.5", T + 99*sec, ""}, {"10.1.0.5", T + 100*sec, "alice"}, {"10.1.0.5", T + 3600*sec, "alice"}, {"10.1.0.6", T + 200*sec, ""}},
		},
		{
			name:   "binding ends after ttl",
			events: []*schemas.AccessEvent{login("10.1.0.5", "alice", T)},
			probes: []probe{{"10.1.0.5", T + 3599*sec, "alice"}, {"10.1.0.5", T + 3600*sec, ""}},
		},
		{
			name:   "logout ends it",
			events: []*schemas.AccessEvent{login("10.1.0.5", "alice", T), ending("10.1.0.5", "alice", schemas.ActionLogout, T+60*sec)},
			probes: []probe{{"10.1.0.5", T + 59*sec, "alice"}, {"10.1.0.5", T + 60*sec, ""}, {"10.1.0.5", T + 61*sec, ""}},
		},
		{
			name:   "disconnect without user ends every binding",
			events: []*schemas.AccessEvent{login("10.1.0.5", "alice", T), login("10.1.0.5", "bob", T+10*sec), ending("10.1.0.5", "", schemas.ActionDisconnect, T+60*sec)},
			probes: []probe{{"10.1.0.5", T + 5*sec, "alice"}, {"10.1.0.5", T + 30*sec, "bob"}, {"10.1.0.5", T + 60*sec, ""}},
		},
		{
			name: "close of another user leaves the binding",
			events: []*schemas.AccessEvent{
				login("10.1.0.5", "alice", T), login("10.1.0.5", "bob", T+10*sec),
				ending("10.1.0.5", "bob", schemas.ActionSessionClose, T+20*sec),
				ending("10.1.0.5", "carol", schemas.ActionLogout, T+25*sec),
			},
			probes: []probe{{"10.1.0.5", T + 15*sec, "bob"}, {"10.1.0.5", T + 20*sec, "alice"}, {"10.1.0.5", T + 30*sec, "alice"}},
		},
		{
			name: "out of order: logout before login, flow older than latest login",
			events: []*schemas.AccessEvent{
				login("10.1.0.5", "bob", T+200*sec),
				ending("10.1.0.5", "alice", schemas.ActionLogout, T+100*sec),
				login("10.1.0.5", "alice", T),
			},
			probes: []probe{{"10.1.0.5", T - sec, ""}, {"10.1.0.5", T + 50*sec, "alice"}, {"10.1.0.5", T + 150*sec, ""}, {"10.1.0.5", T + 250*sec, "bob"}},
		},
		{
			name: "relogin after logout",
			events: []*schemas.AccessEvent{
				login("10.1.0.5", "alice", T), ending("10.1.0.5", "alice", schemas.ActionLogout, T+10*sec), login("10.1.0.5", "alice", T+20*sec),
			},
			probes: []probe{{"10.1.0.5", T + 15*sec, ""}, {"10.1.0.5", T + 25*sec, "alice"}},
		},
		{
			name: "repeated requests extend the binding",
			events: []*schemas.AccessEvent{
				{Time: T, Source: "nginx", User: "alice", SrcAddr: ipAddr("2001:db8::7"), Action: "GET", Outcome: schemas.OutcomeSuccess},
				{Time: T + 3000*sec, Source: "nginx", User: "alice", SrcAddr: ipAddr("2001:db8::7"), Action: "GET", Outcome: schemas.OutcomeSuccess},
			},
			probes: []probe{{"2001:db8::7", T + 3599*sec, "alice"}, {"2001:db8::7", T + 6599*sec, "alice"}, {"2001:db8::7", T + 6600*sec, ""}},
		},
		{
			name: "failures, denials, anonymous and addressless events do not bind",
			events: []*schemas.AccessEvent{
				{Time: T, User: "mallory", SrcAddr: ipAddr("10.1.0.9"), Action: schemas.ActionLogin, Outcome: schemas.OutcomeFailure},
				{Time: T, User: "mallory", SrcAddr: ipAddr("10.1.0.9"), Action: "GET", Outcome: schemas.OutcomeDenied},
				{Time: T, SrcAddr: ipAddr("10.1.0.9"), Action: "GET", Outcome: schemas.OutcomeSuccess},
				{Time: T, User: "alice", Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess},
				{User: "alice", SrcAddr: ipAddr("10.1.0.9"), Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess},
				nil,
			},
			probes: []probe{{"10.1.0.9", T + sec, ""}, {"::", T + sec, ""}},
		},
		{
			name: "untrusted events neither bind nor end a binding",
			events: func() []*schemas.AccessEvent {
				forged := login("10.1.0.9", "bob", T)
				forged.Untrusted = true
				forgedEnd := ending("10.1.0.5", "alice", schemas.ActionLogout, T+10*sec)
				forgedEnd.Untrusted = true
				return []*schemas.AccessEvent{forged, login("10.1.0.5", "alice", T), forgedEnd}
			}(),
			probes: []probe{{"10.1.0.9", T + sec, ""}, {"10.1.0.5", T + 20*sec, "alice"}},
		},
		{
			name: "a failed logout still ends the binding",
			events: []*schemas.AccessEvent{
				login("10.1.0.5", "alice", T),
				{Time: T + 10*sec, User: "alice", SrcAddr: ipAddr("10.1.0.5"), Action: schemas.ActionLogout, Outcome: schemas.OutcomeFailure},
			},
			probes: []probe{{"10.1.0.5", T + 11*sec, ""}},
		},
		{
			name: "history is bounded, oldest dropped",
			events: func() []*schemas.AccessEvent {
				var evs []*schemas.AccessEvent
				for i := range 10 {
					evs = append(evs, login("10.1.0.5", fmt.Sprintf("u%d", i), T+uint64(i)*10*sec))
				}
				return append(evs, login("10.1.0.5", "ancient", T-100*sec))
			}(),
			probes: []probe{{"10.1.0.5", T - 50*sec, ""}, {"10.1.0.5", T + 5*sec, ""}, {"10.1.0.5", T + 15*sec, ""}, {"10.1.0.5", T + 25*sec, "u2"}, {"10.1.0.5", T + 95*sec, "u9"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewIdentityStore(time.Hour)
			for _, ev := range tc.events {
				s.Observe(ev)
			}
			checkProbes(t, s, tc.probes)
		})
	}
}

func TestIdentityStoreExpire(t *testing.T) {
	const T = 1_700_000_000 * sec
	s := NewIdentityStore(time.Hour)
	s.Observe(login("10.1.0.1", "old", T))                                      // until T+1h
	s.Observe(login("10.1.0.2", "recent", T+2*3600*sec))                        // until T+3h
	s.Observe(ending("10.1.0.3", "nobody", schemas.ActionLogout, T))            // a lone close
	s.Observe(login("10.1.0.4", "mixed", T))                                    // until T+1h, dropped
	s.Observe(login("10.1.0.4", "mixed2", T+2*3600*sec))                        // kept
	s.Observe(ending("10.1.0.4", "mixed2", schemas.ActionLogout, T+3*3600*sec)) // kept
	if got := s.Len(); got != 4 {
		t.Errorf("Len = %d, want 4", got)
	}
	// now - ttl = T+1h+1s: the bindings that ended at T+1h go.
	if got := s.Expire(T + 2*3600*sec + sec); got != 2 {
		t.Errorf("Expire = %d, want 2", got)
	}
	if got := s.Len(); got != 2 {
		t.Errorf("Len after Expire = %d, want 2", got)
	}
	checkProbes(t, s, []probe{
		{"10.1.0.1", T + 10*sec, ""},
		{"10.1.0.2", T + 2*3600*sec, "recent"},
		{"10.1.0.4", T + 10*sec, ""},
		{"10.1.0.4", T + 2*3600*sec, "mixed2"},
		{"10.1.0.4", T + 3*3600*sec, ""},
	})
	if got := s.Expire(0); got != 0 {
		t.Errorf("Expire(0) = %d", got)
	}
}

// TestIdentityStoreConcurrent runs Observe, Lookup, Expire and Len
// together; run with -race.
func TestIdentityStoreConcurrent(t *testing.T) {
	const T = 1_700_000_000 * sec
	s := NewIdentityStore(time.Hour)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 2000 {
				a := schemas.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)})
				s.Observe(&schemas.AccessEvent{Time: T + uint64(i)*sec, User: "u", SrcAddr: a, Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess})
				if i%3 == 0 {
					s.Observe(&schemas.AccessEvent{Time: T + uint64(i+1)*sec, SrcAddr: a, Action: schemas.ActionDisconnect})
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for i := range 4000 {
				a := schemas.AddrFrom4([4]byte{10, byte(i % 2), byte(i >> 8), byte(i)})
				if u := s.Lookup(a, T+uint64(i%2000)*sec); u != "" && u != "u" {
					t.Errorf("Lookup = %q", u)
					return
				}
			}
		})
	}
	wg.Go(func() {
		batch := &schemas.FlowBatch{TimeReceived: T, Flows: make([]schemas.Flow, 64)}
		out := make([]FlowBindings, len(batch.Flows))
		for i := range 200 {
			for j := range batch.Flows {
				k := i*64 + j
				batch.Flows[j] = schemas.Flow{TimeStart: T + uint64(k%2000)*sec,
					SrcAddr: schemas.AddrFrom4([4]byte{10, byte(k % 2), byte(k >> 8), byte(k)}), DstAddr: schemas.AddrFrom4([4]byte{10, 9, byte(k >> 8), byte(k)})}
			}
			s.LookupFlows(batch, batch.Flows, out)
			for _, o := range out {
				if u := o.Src.User; u != "" && u != "u" {
					t.Errorf("LookupFlows = %q", u)
					return
				}
			}
		}
	})
	wg.Go(func() {
		for i := range 2000 { // new names while others read
			a := schemas.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
			s.Observe(&schemas.AccessEvent{Time: T + uint64(i)*sec, Source: "kerberos", User: fmt.Sprintf("n%d", i), SrcAddr: a, Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess})
		}
	})
	wg.Go(func() {
		for range 5 {
			s.Expire(T)
			_ = s.Len()
			s.compactPool(true) // names copied to a new pool while others read and write
		}
	})
	wg.Wait()
	// Address i was bound at T+i s; a third of them disconnected a second later.
	for _, i := range []int{1, 2, 4, 1999} {
		a := schemas.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if u := s.Lookup(a, T+uint64(i)*sec+2*sec); u != "u" {
			t.Errorf("Lookup(%s) = %q, want u", a, u)
		}
	}
	a := schemas.AddrFrom4([4]byte{10, 1, 0, 3})
	if u := s.Lookup(a, T+5*sec); u != "" {
		t.Errorf("Lookup(%s) after disconnect = %q", a, u)
	}
}
