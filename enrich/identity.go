package enrich

import (
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// identityHistory bounds the events kept per address: enough for a few
// sessions around a flow's time, however late the flow or its events come.
const identityHistory = 8

// identityShards splits the store so that a writer (Observe, Expire, a
// table's growth) holds up readers only for one shard's work. A power of
// two: a lookup takes the shard from the top bits of the address's hash.
const identityShards = 8
const identityShardBits = 3

// IdentityStore binds addresses to users from access events, as intervals:
// a flow at time T takes the user bound to its address at T, whatever the
// order events arrived in. It is safe for concurrent use; reads (one or two
// per flow) far outnumber writes (one per access event), so the store is
// split into shards, each behind a sync.RWMutex, and LookupFlows reads
// the bindings of many flows under one read lock of each shard. Lookups do
// not allocate; the strings they return are the names of observed events,
// immutable.
//
// Layout. The bindings are held with no Go pointer (bindtable.go): the
// garbage collector does not scan them, however many there are, and an
// address costs one probe of a control array and one 64-byte slot holding
// its newest event; names are interned once into a string pool.
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
type IdentityStore struct {
	ttl  uint64 // ns
	seed uint64
	// pool holds the names of the bindings. Readers read the field under
	// a shard's lock; compactPool replaces it holding every lock, poolMu
	// first, which Observe and Expire hold for reading so that the names
	// they interned belong to the pool they write them to.
	pool     *stringPool
	poolMu   sync.RWMutex
	poolLive int // pool bytes after the last compaction
	shards   [identityShards]bindShard

	// Sessions: the addresses each session (source, host, session ID)
	// bound, so that a stop naming only its session (Windows 4634, an
	// OpenVPN disconnect) ends them; and the stops that came before their
	// start (the access topic orders only per address). Sessions are
	// named by a seeded 64-bit hash of (source, host, session ID): the maps
	// hold no pointer for the collector to scan, and Observe builds no key
	// string (two sessions sharing a hash, about one chance in 2^64 per
	// pair, would share their stop).
	sessMu    sync.Mutex
	sessSeed  maphash.Seed
	sessions  map[uint64]identitySession
	moreAddrs map[uint64][]schemas.Addr // the addresses past the first sessionAddrs, for the few sessions with more
	stopped   map[uint64]uint64         // session key → stop time
	// nasStopped: NAS key (nasKeys) → time of its latest restart
	// (Accounting-On/Off), for the session starts that arrive after it.
	nasStopped map[uint64]uint64

	// Labels of bound workloads (Kubernetes pods, from k8s_pods), by
	// device: the labels the latest event of that device named. Readers
	// hold labelsMu.RLock after their shards' locks; writers take it alone.
	labelsMu  sync.RWMutex
	labels    map[strRef]deviceLabels
	labelsSeq uint64
}

// deviceLabels are a device's labels and when (labelsSeq) they were set.
type deviceLabels struct {
	labels strRef
	seq    uint64
}

// identitySession is what one session bound.
type identitySession struct {
	addrs [sessionAddrs]schemas.Addr
	n     uint8 // addresses bound, up to maxSessionAddrs
	kind  uint8
	user  strRef
	seen  uint64 // latest event time, for Expire
	start uint64 // earliest bind time
	// The network access server that reported the session, by address
	// and by name (nasKeys; 0 when the events named none).
	nasAddr, nasName uint64
}

// sessionAddrs is how many addresses a session holds in place.
const sessionAddrs = 2

// maxSessionAddrs bounds the addresses one session may bind (IPv4, IPv6,
// a few more); later ones are not ended by a session-only stop.
const maxSessionAddrs = 8

// Kinds of binding: a user (or service account) and a device (DHCP MAC,
// RADIUS Calling-Station-Id, pod) are resolved independently, so that a
// VPN logout does not forget the laptop's lease and a lease release does
// not end the user's session.
const (
	kindUser   uint8 = 1
	kindDevice uint8 = 2
)

// NewIdentityStore returns an empty store whose logins bind for ttl
// (enrich.identity_ttl). A ttl ≤ 0 is taken as 8h.
func NewIdentityStore(ttl time.Duration) *IdentityStore {
	if ttl <= 0 {
		ttl = 8 * time.Hour
	}
	s := &IdentityStore{ttl: uint64(ttl), seed: rand.Uint64(), pool: newStringPool(),
		sessSeed: maphash.MakeSeed(), sessions: map[uint64]identitySession{}, moreAddrs: map[uint64][]schemas.Addr{}, stopped: map[uint64]uint64{}, nasStopped: map[uint64]uint64{}, labels: map[strRef]deviceLabels{}}
	for i := range s.shards {
		s.shards[i].init(s.seed)
	}
	return s
}

// TTL returns how long a login binds.
func (s *IdentityStore) TTL() time.Duration { return time.Duration(s.ttl) }

// shard returns the shard of the address whose hash is h.
func (s *IdentityStore) shard(h uint64) *bindShard {
	return &s.shards[h>>(64-identityShardBits)]
}

// isEnding reports whether action ends a session.
func isEnding(action string) bool {
	switch action {
	case schemas.ActionLogout, schemas.ActionSessionClose, schemas.ActionDisconnect:
		return true
	}
	return false
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
//
// Names longer than 4 KiB are cut to 4 KiB.
func (s *IdentityStore) Observe(ev *schemas.AccessEvent) {
	if ev == nil || ev.Untrusted || ev.Time == 0 {
		return
	}
	// The names interned below must be of the pool the event lands in.
	s.poolMu.RLock()
	defer s.poolMu.RUnlock()
	if ev.Action == schemas.ActionNASRestart {
		s.stopNAS(ev)
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
	var key uint64 // 0: no session
	if ev.SessionID != "" && ev.Binding != schemas.BindingNone {
		key = s.sessionKey(ev)
	}
	if stop && key != 0 {
		s.stopSession(key, ev.Time)
	}
	if ev.SrcAddr == (schemas.Addr{}) {
		return
	}
	var e bindEvent
	switch {
	case stop:
		if kind == 0 {
			kind = kindUser // "" ends every user binding, as before devices
		}
		e = bindEvent{time: ev.Time, kind: kind}
	case kind != 0 && (ev.Binding != schemas.BindingNone && ev.Outcome != schemas.OutcomeFailure && ev.Outcome != schemas.OutcomeDenied ||
		ev.Binding == schemas.BindingNone && ev.Outcome == schemas.OutcomeSuccess && ev.User != ""):
		until := ev.Time + s.ttl
		if ev.Expires != 0 {
			until = ev.Expires
		}
		if until <= ev.Time {
			return // a lease that already ended
		}
		e = bindEvent{time: ev.Time, until: until, kind: kind}
	default:
		return
	}
	e.user, e.device, e.source = s.pool.intern(ev.User), s.pool.intern(device), s.pool.intern(ev.Source)
	if ev.Labels != "" && e.device != 0 && !stop {
		l := s.pool.intern(ev.Labels)
		s.labelsMu.Lock()
		s.labelsSeq++
		s.labels[e.device] = deviceLabels{labels: l, seq: s.labelsSeq}
		s.labelsMu.Unlock()
	}
	s.insert(ev.SrcAddr, e)
	if key != 0 && !stop {
		nasAddr, nasName := s.nasKeys(ev)
		if at, ok := s.bindSession(key, nasAddr, nasName, ev.SrcAddr, &e); ok {
			s.insert(ev.SrcAddr, bindEvent{time: at, user: e.user, device: e.device, source: e.source, kind: e.kind})
		}
	}
}

func (s *IdentityStore) insert(a schemas.Addr, e bindEvent) {
	h := addrHash(&a, s.seed)
	sh := s.shard(h)
	var buf [identityHistory]bindEvent
	sh.mu.Lock()
	hist := buf[:0]
	i := sh.find(&a, h)
	if i >= 0 {
		hist = sh.history(i, &buf)
	}
	hist = insertEvent(hist, e)
	if i < 0 {
		i = sh.add(&a, h)
	}
	sh.setHistory(i, hist)
	sh.mu.Unlock()
}

// bindSession records that session key bound a; it returns the time of a
// stop of that session seen before (at or after the bind) for the caller
// to apply.
func (s *IdentityStore) bindSession(key, nasAddr, nasName uint64, a schemas.Addr, e *bindEvent) (uint64, bool) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if at, ok := s.stopped[key]; ok && at >= e.time {
		return at, true
	}
	for _, nas := range [2]uint64{nasAddr, nasName} {
		if at, ok := s.nasStopped[nas]; ok && nas != 0 && at >= e.time {
			return at, true // its NAS restarted after it started
		}
	}
	ss, ok := s.sessions[key]
	if !ok {
		ss = identitySession{user: e.user, kind: e.kind, start: e.time, nasAddr: nasAddr, nasName: nasName}
	}
	ss.seen = max(ss.seen, e.time)
	ss.start = min(ss.start, e.time)
	defer func() { s.sessions[key] = ss }()
	more := s.moreAddrs[key]
	for i := range int(ss.n) {
		if i < sessionAddrs && ss.addrs[i] == a || i >= sessionAddrs && more[i-sessionAddrs] == a {
			return 0, false
		}
	}
	switch {
	case int(ss.n) < sessionAddrs:
		ss.addrs[ss.n] = a
		ss.n++
	case int(ss.n) < maxSessionAddrs:
		s.moreAddrs[key] = append(more, a)
		ss.n++
	}
	return 0, false
}

// sessionKey names ev's session (never 0).
func (s *IdentityStore) sessionKey(ev *schemas.AccessEvent) uint64 {
	var h maphash.Hash
	h.SetSeed(s.sessSeed)
	h.WriteString(ev.Source)
	h.WriteByte(0)
	h.WriteString(ev.Host)
	h.WriteByte(0)
	h.WriteString(ev.SessionID)
	return h.Sum64() | 1
}

// nasKeys names the network access server of ev (RADIUS NAS-IP-Address
// in DstAddr, NAS-Identifier in DstHost) for ev's source; 0 for what the
// event does not name.
func (s *IdentityStore) nasKeys(ev *schemas.AccessEvent) (byAddr, byName uint64) {
	if ev.DstAddr != (schemas.Addr{}) {
		byAddr = maphash.Bytes(s.sessSeed, append([]byte(ev.Source+"\x00a\x00"), ev.DstAddr[:]...)) | 1
	}
	if ev.DstHost != "" {
		byName = maphash.String(s.sessSeed, ev.Source+"\x00n\x00"+ev.DstHost) | 1
	}
	return byAddr, byName
}

// stopNAS ends, at ev.Time, every session that ev's network access server
// reported and that started by then (a NAS restart, Accounting-On/Off).
func (s *IdentityStore) stopNAS(ev *schemas.AccessEvent) {
	byAddr, byName := s.nasKeys(ev)
	if byAddr == 0 && byName == 0 {
		return
	}
	t := ev.Time
	var ended []uint64
	s.sessMu.Lock()
	for _, nas := range [2]uint64{byAddr, byName} {
		if nas != 0 {
			s.nasStopped[nas] = max(s.nasStopped[nas], t)
		}
	}
	for k, ss := range s.sessions {
		if ss.start <= t && (byAddr != 0 && ss.nasAddr == byAddr || byName != 0 && ss.nasName == byName) {
			ended = append(ended, k)
		}
	}
	s.sessMu.Unlock()
	for _, k := range ended {
		s.stopSession(k, t)
	}
}

// stopSession ends at t what session key bound.
func (s *IdentityStore) stopSession(key uint64, t uint64) {
	s.sessMu.Lock()
	ss, ok := s.sessions[key]
	more := s.moreAddrs[key]
	delete(s.sessions, key)
	delete(s.moreAddrs, key)
	s.stopped[key] = max(s.stopped[key], t)
	s.sessMu.Unlock()
	if !ok {
		return
	}
	for i := range int(ss.n) {
		a := ss.addrs[min(i, sessionAddrs-1)]
		if i >= sessionAddrs {
			a = more[i-sessionAddrs]
		}
		s.insert(a, bindEvent{time: t, user: ss.user, kind: ss.kind})
	}
}

// insertEvent adds e to the time-ordered history h (whose capacity is
// identityHistory).
func insertEvent(h []bindEvent, e bindEvent) []bindEvent {
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
	h = append(h, bindEvent{})
	copy(h[i+1:], h[i:])
	h[i] = e
	return h
}

// Binding is what the store knows about an address at a time: the user
// (or service account) and the source that bound it, and the device
// behind the address with its source and, for a Kubernetes pod, its
// labels ("key=value" pairs, comma-separated, sorted). Empty strings mean
// unknown.
type Binding struct {
	User, Source         string
	Device, DeviceSource string
	Labels               string
}

// FlowBindings are the bindings of a flow's two ends.
type FlowBindings struct {
	Src, Dst Binding
}

// Lookup returns the user bound to a at time t (Unix ns), or "".
func (s *IdentityStore) Lookup(a schemas.Addr, t uint64) string {
	return s.LookupBinding(a, t).User
}

// LookupBinding returns the user and device bound to a at time t (Unix
// ns), with their sources. It does not allocate.
func (s *IdentityStore) LookupBinding(a schemas.Addr, t uint64) Binding {
	h := addrHash(&a, s.seed)
	sh := s.shard(h)
	var b Binding
	sh.mu.RLock()
	s.labelsMu.RLock()
	if i := sh.find(&a, h); i >= 0 {
		s.resolveBinding(sh, i, t, &b)
	}
	s.labelsMu.RUnlock()
	sh.mu.RUnlock()
	return b
}

// lookupGroup is how many flows LookupFlows resolves together: their
// control words, then their slots, are loaded one after the other with
// nothing depending on them in between, so that the cache misses of a
// large table overlap instead of following each other.
const lookupGroup = 16

// LookupFlows sets out[i] to the bindings of flows[i]'s source and
// destination at the flow's time (b.FlowTime), as LookupBinding would. It
// takes each shard's read lock once for all of them: callers pass a few
// dozen flows at a time (Enricher.EnrichFlows passes 64), so that an
// Observe never waits long. len(out) ≥ len(flows). It does not allocate.
func (s *IdentityStore) LookupFlows(b *schemas.FlowBatch, flows []schemas.Flow, out []FlowBindings) {
	out = out[:len(flows)]
	for i := range s.shards {
		s.shards[i].mu.RLock()
	}
	s.labelsMu.RLock()
	var hs, cw [2 * lookupGroup]uint64
	var cand [2 * lookupGroup]int32
	for base := 0; base < len(flows); base += lookupGroup {
		fl := flows[base:min(base+lookupGroup, len(flows))]
		n := 2 * len(fl)
		for j := range fl {
			hs[2*j] = addrHash(&fl[j].SrcAddr, s.seed)
			hs[2*j+1] = addrHash(&fl[j].DstAddr, s.seed)
		}
		// The control words: one load each, none waiting for another.
		for j := range n {
			sh := s.shard(hs[j])
			cw[j] = sh.ctrl[(hs[j]>>7)&uint64(len(sh.ctrl)-1)]
		}
		// The slot of each first match, likewise; the key decides later.
		for j := range n {
			cand[j] = -1
			if m := matchH2(cw[j], hs[j]&0x7f); m != 0 {
				sh := s.shard(hs[j])
				i := int((hs[j]>>7)&uint64(len(sh.ctrl)-1))*8 + bits.TrailingZeros64(m)/8
				if sh.slots[i].last.time != 0 {
					cand[j] = int32(i)
				}
			}
		}
		for j := range fl {
			f := &fl[j]
			t := b.FlowTime(f)
			o := &out[base+j]
			*o = FlowBindings{}
			s.lookupHashed(&f.SrcAddr, hs[2*j], cw[2*j], cand[2*j], t, &o.Src)
			s.lookupHashed(&f.DstAddr, hs[2*j+1], cw[2*j+1], cand[2*j+1], t, &o.Dst)
		}
	}
	s.labelsMu.RUnlock()
	for i := range s.shards {
		s.shards[i].mu.RUnlock()
	}
}

// lookupHashed resolves a (hash h, first control word c, first candidate
// slot cand or -1) at t into out. The caller holds the shard's read lock.
func (s *IdentityStore) lookupHashed(a *schemas.Addr, h, c uint64, cand int32, t uint64, out *Binding) {
	sh := s.shard(h)
	i := -1
	switch {
	case cand >= 0 && sh.slots[cand].addr == *a:
		i = int(cand)
	case matchH2(c, h&0x7f) == 0 && matchEmpty(c) != 0:
		return // the common miss: no candidate, and the probe ends here
	default:
		i = sh.find(a, h)
	}
	if i >= 0 {
		s.resolveBinding(sh, i, t, out)
	}
}

// resolveBinding sets b from slot i's history at t. The caller holds the
// shard's lock and labelsMu.RLock.
func (s *IdentityStore) resolveBinding(sh *bindShard, i int, t uint64, b *Binding) {
	last := &sh.slots[i].last
	if e := s.resolveAt(sh, last, t, kindUser); e != nil {
		b.User, b.Source = s.pool.str(e.user), s.pool.str(e.source)
	}
	if last.hasDevice {
		if e := s.resolveAt(sh, last, t, kindDevice); e != nil {
			b.Device, b.DeviceSource = s.pool.str(e.device), s.pool.str(e.source)
			if len(s.labels) > 0 {
				b.Labels = s.pool.str(s.labels[e.device].labels)
			}
		}
	}
}

// name is what a close of kind k must name to end e: the user, or the
// device's ID without the host name (a DHCP release names only the MAC
// its lease was given with a name).
func (s *IdentityStore) name(e *bindEvent, k uint8) string {
	if k == kindDevice {
		id, _, _ := strings.Cut(s.pool.str(e.device), " ")
		return id
	}
	return s.pool.str(e.user)
}

// resolveAt walks the history of the address whose newest event is last
// back from t (see IdentityStore) for the binding of kind k. Callers hold
// the shard's lock.
func (s *IdentityStore) resolveAt(sh *bindShard, last *bindEvent, t uint64, k uint8) *bindEvent {
	// Fast path: the newest event decides, without touching older.
	if t >= last.time && last.kind&k != 0 {
		if !last.isClose() && t < last.until {
			return last
		}
		if last.isClose() && s.name(last, k) == "" {
			return nil
		}
	}
	older := sh.olderEvents[last.older : int(last.older)+int(last.nOlder)]
	var closed [identityHistory]string
	nclosed := 0
	for i := len(older); i >= 0; i-- {
		e := last
		if i < len(older) {
			e = &older[i]
		}
		if e.time > t || e.kind&k == 0 {
			continue
		}
		if e.isClose() {
			name := s.name(e, k)
			if name == "" {
				return nil
			}
			closed[nclosed] = name
			nclosed++
			continue
		}
		if t >= e.until {
			continue
		}
		ended := false
		name := s.name(e, k)
		for _, u := range closed[:nclosed] {
			if u == name {
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
func (s *IdentityStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += sh.n
		sh.mu.RUnlock()
	}
	return n
}

// Expire drops the bindings whose interval ended before now - ttl (they
// are kept one more ttl for flows that arrive late), the closes older than
// that with no binding left before them, and the addresses left with
// nothing. A recent close with no binding is kept: its login may still
// arrive, out of order. It returns how many bindings it dropped. now is Unix ns.
//
// Then, when the string pool holds twice the bytes of names that were
// still referenced after its last compaction (and at least
// poolCompactMin), the names still referenced are copied into a new pool
// and the old one is left to the collector: the names of sessions, leases
// and pods that ended are not kept forever. Lookups and Observe wait for
// the copy (0.14 s for 1M bindings of BenchmarkEnrichMixedSources; rare).
func (s *IdentityStore) Expire(now uint64) int {
	s.poolMu.RLock()
	n := s.expire(now)
	s.poolMu.RUnlock()
	s.compactPool(false)
	return n
}

// poolCompactMin is the pool size from which Expire compacts it.
var poolCompactMin = 64 << 20

// compactPool copies the names still referenced into a new pool (see
// Expire) when the pool has grown enough, or always with force.
func (s *IdentityStore) compactPool(force bool) {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	s.pool.mu.Lock()
	size := s.pool.bytes
	s.pool.mu.Unlock()
	if !force && (size < poolCompactMin || size < 2*s.poolLive) {
		return
	}
	for i := range s.shards {
		s.shards[i].mu.Lock()
	}
	s.sessMu.Lock()
	s.labelsMu.Lock()
	old, np := s.pool, newStringPool()
	re := func(r *strRef) { *r = np.intern(old.str(*r)) }
	for i := range s.shards {
		sh := &s.shards[i]
		for g, c := range sh.ctrl {
			for b := range 8 {
				if byte(c>>(8*b))&0x80 != 0 {
					continue
				}
				last := &sh.slots[g*8+b].last
				for j := -1; j < int(last.nOlder); j++ {
					e := last
					if j >= 0 {
						e = &sh.olderEvents[int(last.older)+j]
					}
					re(&e.user)
					re(&e.device)
					re(&e.source)
				}
			}
		}
	}
	for k, ss := range s.sessions {
		re(&ss.user)
		s.sessions[k] = ss
	}
	labels := make(map[strRef]deviceLabels, len(s.labels))
	for d, l := range s.labels {
		re(&d)
		re(&l.labels)
		labels[d] = l
	}
	s.labels = labels
	s.pool, s.poolLive = np, np.bytes
	s.labelsMu.Unlock()
	s.sessMu.Unlock()
	for i := range s.shards {
		s.shards[i].mu.Unlock()
	}
}

func (s *IdentityStore) expire(now uint64) int {
	if now <= s.ttl {
		return 0
	}
	horizon := now - s.ttl
	dropped := 0
	s.sessMu.Lock()
	for k, ss := range s.sessions {
		if ss.seen+s.ttl < horizon {
			delete(s.sessions, k)
			delete(s.moreAddrs, k)
		}
	}
	for k, at := range s.stopped {
		if at < horizon {
			delete(s.stopped, k)
		}
	}
	for k, at := range s.nasStopped {
		if at < horizon {
			delete(s.nasStopped, k)
		}
	}
	s.sessMu.Unlock()
	s.labelsMu.RLock()
	seq, withLabels := s.labelsSeq, len(s.labels) > 0
	s.labelsMu.RUnlock()
	var live map[strRef]bool // the devices still bound, when labels are kept
	if withLabels {
		live = map[strRef]bool{}
	}
	var buf [identityHistory]bindEvent
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for g, c := range sh.ctrl {
			for b := range 8 {
				if byte(c>>(8*b))&0x80 != 0 {
					continue // empty or deleted
				}
				idx := g*8 + b
				v := &sh.slots[idx].last
				if v.nOlder == 0 && ((v.isClose() && v.time >= horizon) || (!v.isClose() && v.until >= horizon)) {
					continue // the common case: one event, still current
				}
				h := sh.history(idx, &buf)
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
				if len(kept) == 0 {
					sh.remove(idx)
				} else {
					sh.setHistory(idx, kept)
				}
			}
		}
		if live != nil {
			for g, c := range sh.ctrl {
				for b := range 8 {
					if byte(c>>(8*b))&0x80 == 0 {
						h := sh.history(g*8+b, &buf)
						for j := range h {
							live[h[j].device] = true
						}
					}
				}
			}
		}
		sh.mu.Unlock()
	}
	if live != nil {
		s.labelsMu.Lock()
		for d, l := range s.labels {
			if !live[d] && l.seq <= seq { // set since the walk began: keep
				delete(s.labels, d)
			}
		}
		s.labelsMu.Unlock()
	}
	return dropped
}
