package enrich

// This is the identity store as it was before its bindings moved into a
// pointer-free table (bindtable.go), kept as the reference the new one
// is checked against (TestIdentityStoreMatchesReference).

import (
	"encoding/binary"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// refShards splits the store so that Lookups from several workers and
// the Observe of the access-event consumer rarely meet on a lock. A power
// of two.
const refShards = 64

// refStore binds addresses to users from access events, as intervals:
// a flow at time T takes the user bound to its address at T, whatever the
// order events arrived in. It is safe for concurrent use; reads (one or two
// per flow) far outnumber writes (one per access event), so the store is
// split into shards, each behind a sync.RWMutex. Lookup does not allocate;
// the strings it returns are the users of observed events.
//
// Model. Per address the store keeps a short time-ordered history
// (identityHistory events, the oldest dropped first) of
//
//   - binds: user U from time S until S+ttl (a successful login or any other
//     successful event naming a user; repeated binds of the same user while
//     bound extend the interval instead of adding events);
//   - closes: a logout, session close or disconnect at time C for user U, or
//     for whoever is bound when the event names no user.
//
// Lookup(a, T) walks the history back from T: the latest bind at or before
// T whose interval still covers T and whose user no close between the bind
// and T ended is the answer. So a login binds from its time on (never
// before), a logout ends the binding from its time on (flows before it keep
// the identity), and when two users share an address (a jump host) the
// later login wins until it ends, after which the earlier one shows again.
type refStore struct {
	ttl    uint64 // ns
	shards [refShards]refShard

	// Sessions: the addresses each session (source, host, session ID)
	// bound, so that a stop naming only its session (Windows 4634, an
	// OpenVPN disconnect) ends them; and the stops that came before their
	// start (the access topic orders only per address).
	sessMu   sync.Mutex
	sessions map[string]*refSession
	stopped  map[string]uint64 // session key → stop time
}

// refSession is what one session bound.
type refSession struct {
	addrs []schemas.Addr
	user  string
	kind  uint8
	seen  uint64 // latest event time, for Expire
}

// refMaxSessionAddrs bounds the addresses one session may bind (IPv4, IPv6,
// a few more); later ones are not ended by a session-only stop.
const refMaxSessionAddrs = 8

type refShard struct {
	mu    sync.RWMutex
	addrs map[schemas.Addr]refAddrIdentity
	_     [64]byte // keep shards' locks off each other's cache lines
}

type refEvent struct {
	time   uint64 // Unix ns: bind start, or close time
	until  uint64 // bind: end of the interval (exclusive); 0 for a close
	user   string // close: "" ends every binding of the kinds it names
	device string // the device behind the address ("" for user-only events)
	source string // the access event's Source (openvpn, radius, dhcp…)
	kind   uint8  // kindUser and/or kindDevice: what the event binds or ends
}

func (e *refEvent) isClose() bool { return e.until == 0 }

// refAddrIdentity is the history of one address, its newest event held in the
// map slot itself: a flow usually wants the latest binding, and reading it
// then costs no second memory access.
type refAddrIdentity struct {
	last      refEvent   // the newest event
	older     []refEvent // the others, oldest first
	hasDevice bool       // some event binds a device: resolve that kind too
}

// history returns the whole history, oldest first. It reuses older's array
// (history is called under the shard's write lock, or on a copy).
func (v *refAddrIdentity) history() []refEvent {
	return append(v.older, v.last)
}

func refSplitHistory(h []refEvent) refAddrIdentity {
	n := len(h)
	v := refAddrIdentity{last: h[n-1], older: h[: n-1 : n]}
	for i := range h {
		if h[i].kind&kindDevice != 0 && !h[i].isClose() {
			v.hasDevice = true
		}
	}
	return v
}

// newRefStore returns an empty store whose logins bind for ttl
// (enrich.identity_ttl). A ttl ≤ 0 is taken as 8h.
func newRefStore(ttl time.Duration) *refStore {
	if ttl <= 0 {
		ttl = 8 * time.Hour
	}
	s := &refStore{ttl: uint64(ttl), sessions: map[string]*refSession{}, stopped: map[string]uint64{}}
	for i := range s.shards {
		s.shards[i].addrs = make(map[schemas.Addr]refAddrIdentity)
	}
	return s
}

// TTL returns how long a login binds.
func (s *refStore) TTL() time.Duration { return time.Duration(s.ttl) }

func (s *refStore) shard(a *schemas.Addr) *refShard {
	return &s.shards[refShardIndex(a)]
}

func refShardIndex(a *schemas.Addr) uint64 {
	h := binary.LittleEndian.Uint64(a[:8]) ^ binary.LittleEndian.Uint64(a[8:])
	h *= 0x9E3779B97F4A7C15
	return h >> (64 - 6) // refShards == 1<<6
}

// Observe applies an access event.
//
// A stop (Binding stop, or a logout, session close or disconnect, any
// outcome) ends, at ev.Time, the binding of ev.SrcAddr to ev.User (to any
// user when ev.User is empty) and, when it names a device, the device's.
// A stop without an address ends what its session (ev.Source, ev.Host,
// ev.SessionID) bound, even when it arrives before its start.
//
// A start or update (Binding start/update), or any other event with
// OutcomeSuccess, a User and a SrcAddr (sshd accept, gateway session
// open, k8s audit request, Kerberos ticket…), binds SrcAddr to User and/or
// Device from ev.Time until ev.Expires when set (a DHCP lease), else for
// the store's ttl. Other events, and events with no time, are ignored.
//
// Untrusted events (ev.Untrusted: the collector could not vouch for their
// sender, see ingest.access.trusted_senders and http_token_hosts) are
// ignored too, closes included: whoever can forge a login can forge a
// logout, and either would mislabel someone else's traffic.
func (s *refStore) Observe(ev *schemas.AccessEvent) {
	if ev == nil || ev.Untrusted || ev.Time == 0 {
		return
	}
	device := ev.Device
	if ev.DeviceName != "" {
		if device == "" {
			device = ev.DeviceName
		} else {
			device += " " + ev.DeviceName
		}
	}
	var kind uint8
	if ev.User != "" {
		kind |= kindUser
	}
	if device != "" {
		kind |= kindDevice
	}
	stop := ev.Binding == schemas.BindingStop || (ev.Binding == schemas.BindingNone && isEnding(ev.Action))
	// Only explicit sessions (Binding set) are tracked by ID: a Kubernetes
	// audit ID or a gateway session names one request or connection, and
	// keeping those would grow without need.
	var key string
	if ev.SessionID != "" && ev.Binding != schemas.BindingNone {
		key = ev.Source + "\x00" + ev.Host + "\x00" + ev.SessionID
	}
	if stop && key != "" {
		s.stopSession(key, ev.Time)
	}
	if ev.SrcAddr == (schemas.Addr{}) {
		return
	}
	var e refEvent
	switch {
	case stop:
		if kind == 0 {
			kind = kindUser // "" ends every user binding, as before devices
		}
		e = refEvent{time: ev.Time, user: ev.User, device: device, source: ev.Source, kind: kind}
	case kind != 0 && (ev.Binding != schemas.BindingNone && ev.Outcome != schemas.OutcomeFailure && ev.Outcome != schemas.OutcomeDenied ||
		ev.Binding == schemas.BindingNone && ev.Outcome == schemas.OutcomeSuccess && ev.User != ""):
		until := ev.Time + s.ttl
		if ev.Expires != 0 {
			until = ev.Expires
		}
		if until <= ev.Time {
			return // a lease that already ended
		}
		e = refEvent{time: ev.Time, until: until, user: ev.User, device: device, source: ev.Source, kind: kind}
	default:
		return
	}
	s.insert(ev.SrcAddr, e)
	if key != "" && !stop {
		if at, ok := s.bindSession(key, ev.SrcAddr, &e); ok {
			s.insert(ev.SrcAddr, refEvent{time: at, user: e.user, device: e.device, source: e.source, kind: e.kind})
		}
	}
}

func (s *refStore) insert(a schemas.Addr, e refEvent) {
	sh := s.shard(&a)
	sh.mu.Lock()
	var h []refEvent
	if v, ok := sh.addrs[a]; ok {
		h = v.history()
	}
	sh.addrs[a] = refSplitHistory(refInsertEvent(h, e))
	sh.mu.Unlock()
}

// bindSession records that session key bound a; it returns the time of a
// stop of that session seen before (at or after the bind) for the caller
// to apply.
func (s *refStore) bindSession(key string, a schemas.Addr, e *refEvent) (uint64, bool) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if at, ok := s.stopped[key]; ok && at >= e.time {
		return at, true
	}
	ss := s.sessions[key]
	if ss == nil {
		ss = &refSession{user: e.user, kind: e.kind}
		s.sessions[key] = ss
	}
	ss.seen = max(ss.seen, e.time)
	for _, b := range ss.addrs {
		if b == a {
			return 0, false
		}
	}
	if len(ss.addrs) < refMaxSessionAddrs {
		ss.addrs = append(ss.addrs, a)
	}
	return 0, false
}

// stopSession ends at t what session key bound.
func (s *refStore) stopSession(key string, t uint64) {
	s.sessMu.Lock()
	ss := s.sessions[key]
	delete(s.sessions, key)
	s.stopped[key] = max(s.stopped[key], t)
	s.sessMu.Unlock()
	if ss == nil {
		return
	}
	for _, a := range ss.addrs {
		s.insert(a, refEvent{time: t, user: ss.user, kind: ss.kind})
	}
}

// refInsertEvent adds e to the time-ordered history h.
func refInsertEvent(h []refEvent, e refEvent) []refEvent {
	n := len(h)
	// Extend the latest bind when the same user is seen again while bound
	// (every request of a web session would otherwise be an event).
	if !e.isClose() && n > 0 {
		last := &h[n-1]
		if !last.isClose() && last.user == e.user && last.device == e.device && last.kind == e.kind &&
			e.time >= last.time && e.time <= last.until {
			last.until = max(last.until, e.until)
			return h
		}
	}
	i := sort.Search(n, func(i int) bool { return h[i].time > e.time })
	if n == identityHistory {
		if i == 0 {
			return h // older than everything kept: drop it
		}
		copy(h, h[1:i]) // drop the oldest, shift the ones before i down
		h[i-1] = e
		return h
	}
	if h == nil {
		h = make([]refEvent, 0, 2)
	}
	h = append(h, refEvent{})
	copy(h[i+1:], h[i:])
	h[i] = e
	return h
}

// Lookup returns the user bound to a at time t (Unix ns), or "".
func (s *refStore) Lookup(a schemas.Addr, t uint64) string {
	return s.LookupBinding(a, t).User
}

// LookupBinding returns the user and device bound to a at time t (Unix
// ns), with their sources. It does not allocate.
func (s *refStore) LookupBinding(a schemas.Addr, t uint64) Binding {
	sh := s.shard(&a)
	sh.mu.RLock()
	v, ok := sh.addrs[a]
	var b Binding
	if ok {
		if e := v.resolveAt(t, kindUser); e != nil {
			b.User, b.Source = e.user, e.source
		}
		if v.hasDevice {
			if e := v.resolveAt(t, kindDevice); e != nil {
				b.Device, b.DeviceSource = e.device, e.source
			}
		}
	}
	sh.mu.RUnlock()
	return b
}

// resolveAt walks the history back from t (see refStore) for the
// binding of kind k. Callers hold the shard's lock: Observe shifts events
// in older's array.
func (v *refAddrIdentity) resolveAt(t uint64, k uint8) *refEvent {
	name := func(e *refEvent) string {
		if k == kindDevice {
			// The device's ID without the host name: a DHCP release
			// names only the MAC its lease was given with a name.
			id, _, _ := strings.Cut(e.device, " ")
			return id
		}
		return e.user
	}
	// Fast path: the newest event decides, without touching older.
	if t >= v.last.time && v.last.kind&k != 0 {
		if !v.last.isClose() && t < v.last.until {
			return &v.last
		}
		if v.last.isClose() && name(&v.last) == "" {
			return nil
		}
	}
	var closed [identityHistory]string
	nclosed := 0
	for i := len(v.older); i >= 0; i-- {
		e := &v.last
		if i < len(v.older) {
			e = &v.older[i]
		}
		if e.time > t || e.kind&k == 0 {
			continue
		}
		if e.isClose() {
			if name(e) == "" {
				return nil
			}
			closed[nclosed] = name(e)
			nclosed++
			continue
		}
		if t >= e.until {
			continue
		}
		ended := false
		for _, u := range closed[:nclosed] {
			if u == name(e) {
				ended = true
				break
			}
		}
		if !ended {
			return e
		}
	}
	return nil
}

// Len returns the number of addresses the store keeps a history for
// (nearly all of them with a binding; Expire drops the others). It is
// cheap: it does not walk the histories.
func (s *refStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.addrs)
		sh.mu.RUnlock()
	}
	return n
}

// Expire drops the bindings whose interval ended before now - ttl (they
// are kept one more ttl for flows that arrive late), the closes older than
// that with no binding left before them, and the addresses left with
// nothing. A recent close with no binding is kept: its login may still
// arrive, out of order. It returns how many bindings it dropped. now is Unix ns.
func (s *refStore) Expire(now uint64) int {
	if now <= s.ttl {
		return 0
	}
	horizon := now - s.ttl
	dropped := 0
	s.sessMu.Lock()
	for k, ss := range s.sessions {
		if ss.seen+s.ttl < horizon {
			delete(s.sessions, k)
		}
	}
	for k, at := range s.stopped {
		if at < horizon {
			delete(s.stopped, k)
		}
	}
	s.sessMu.Unlock()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for a, v := range sh.addrs {
			if len(v.older) == 0 && ((v.last.isClose() && v.last.time >= horizon) || (!v.last.isClose() && v.last.until >= horizon)) {
				continue // the common case: one event, still current
			}
			h := v.history()
			kept := h[:0]
			binds := 0
			for _, e := range h {
				switch {
				case !e.isClose() && e.until < horizon:
					dropped++
				case e.isClose() && e.time < horizon && binds == 0:
				default:
					if !e.isClose() {
						binds++
					}
					kept = append(kept, e)
				}
			}
			clear(h[len(kept):])
			if len(kept) == 0 {
				delete(sh.addrs, a)
			} else {
				sh.addrs[a] = refSplitHistory(kept)
			}
		}
		sh.mu.Unlock()
	}
	return dropped
}
