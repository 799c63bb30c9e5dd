// Package engine holds every flowaudit detector as pure, deterministic,
// event-time logic: no Kafka, no I/O, no wall clock. The detect stage feeds
// an Engine enriched flows and access events (both partitioned by source
// address), routes the Keyed events the Engine forwards by Keyed.Key to
// the engine that owns the key, and calls Advance with its clock.
//
// Detectors and where they run:
//
//   - local, keyed by source (all flows of a source reach one engine):
//     policy_violation, address_scan, port_scan, unattributed_access,
//     auth_bruteforce per source;
//   - keyed, owned by the engine Keyed.Key routes to: new_edge (key: the
//     edge), volume_spike (the segment pair; engines forward per-minute
//     partial sums, the owner adds them), lateral_chain (the identity),
//     auth_bruteforce per user (the user).
//
// Windows are tumbling, aligned to Unix-epoch multiples of their length
// (a 5m window starts at 12:00:00, 12:05:00…), in event time: a flow's
// TimeStart (else TimeEnd, else the batch's TimeReceived), an access
// event's Time (else Received). A key's window starts with its first event
// and ends at the next multiple; the first event of a later window, or
// Advance past end + Lateness, closes it. Events older than their key's
// open window are late and dropped (Stats.Late).
//
// Alerts: ID is the lowercase hex of the first 16 bytes of
// SHA-256(kind "\x00" key "\x00" decimal window start), so any engine fed
// the same events raises the same ID. The first emission happens as soon
// as the threshold is crossed, with Time the event time that crossed it;
// when the window closes an Update emission with the same ID carries the
// final Count/Bytes/LastSeen if they changed. After an alert for (kind,
// key), no new alert for that (kind, key) for Configuration.Suppress.
package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

// Kind codes, in schemas.AlertKinds order.
const (
	kPolicy uint8 = iota
	kNewEdge
	kAddrScan
	kPortScan
	kVolume
	kAuth
	kUnattr
	kLateral
	nKinds
)

var kindNames = [nKinds]string{
	schemas.AlertPolicyViolation, schemas.AlertNewEdge, schemas.AlertAddressScan, schemas.AlertPortScan,
	schemas.AlertVolumeSpike, schemas.AlertAuthBruteforce, schemas.AlertUnattributedAccess, schemas.AlertLateralChain,
}

var baseSeverity = [nKinds]schemas.Severity{
	kPolicy: schemas.SeverityMedium, kNewEdge: schemas.SeverityLow, kAddrScan: schemas.SeverityHigh,
	kPortScan: schemas.SeverityMedium, kVolume: schemas.SeverityMedium, kAuth: schemas.SeverityMedium,
	kUnattr: schemas.SeverityMedium, kLateral: schemas.SeverityHigh,
}

func kindCode(s string) (uint8, bool) {
	for i, n := range kindNames {
		if n == s {
			return uint8(i), true
		}
	}
	return 0, false
}

// Internal limits (documented on Engine).
const (
	maxSegments      = 4096              // segment names cached without a matcher entry
	maxHopsPerIdent  = 64                // lateral_chain hops kept per identity
	maxOwnedKeys     = 1 << 20           // per keyed detector: edges, pairs, identities, users
	maxForwardCache  = 1 << 16           // per segment pair: edge and identity forward marks
	edgeRefresh      = uint64(time.Hour) // a known edge is re-forwarded this often (keeps the owner's baseline live)
	evictSample      = 8                 // sources examined per eviction
	maxZeroFill      = 120               // empty minutes folded into volume stats at once
	userSourceSample = 16                // distinct sources remembered per user window
)

// Engine runs every detector. It is NOT safe for concurrent use: run one
// per consumer goroutine. emit receives each alert (first emissions and
// Updates) and forward each Keyed event for a keyed detector; both are
// called synchronously from ObserveFlow, ObserveAccess, ObserveKeyed and
// Advance, and must not call back into the Engine. The values passed are
// owned by the callee (emit) / valid only during the call (forward: copy
// or marshal it).
//
// Memory: at most Configuration.MaxSources sources (when full, the least recently
// seen of 8 sources sampled round-robin is evicted; its suppression marks
// survive), Configuration.MaxKeysPerSource windows per source, ScanConfig.MaxTracked
// values per scan window; idle sources are dropped once their windows and
// suppression have expired. Keyed state (edges, pairs, identities, users)
// is capped at 1<<20 keys per detector; lateral_chain keeps 64 hops per
// identity.
type Engine struct {
	cfg     Configuration
	m       *policy.Matcher
	emit    func(*schemas.Alert)
	forward func(*Keyed)

	win      [nKinds]uint64 // window length per kind, ns
	suppress uint64
	lateness uint64

	segs     map[string]*segInfo
	lastSeg  *segInfo
	pairs    map[pairKey]*pairState
	pairList []*pairState

	// Local per-source state: arena + index.
	srcs    []srcState
	srcIdx  map[schemas.Addr]int32
	free    []int32
	hand    int
	pending []pendingAgg

	// Keyed (owner) state.
	edges   map[edgeKey]uint64 // last seen
	vols    map[pairKey]*volOwner
	volList []*volOwner // e.vols in creation order: deterministic emission order
	idents  map[string]*identState
	users   map[string]*userAuth
	supp    map[string]uint64 // kind "\x00" key → time of the last first emission

	learnStart uint64 // new_edge: earliest event time (0: none yet)
	now        uint64 // latest Advance
	latest     uint64 // latest event time observed (flows, access events, keyed events)
	nextSweep  uint64
	stats      Stats
	keyed      Keyed // reused for forward
}

// Stats are counters and sizes for metrics.
type Stats struct {
	Sources    int    // source addresses tracked
	Aggregates int    // open windows of the per-source detectors
	Edges      int    // new_edge edges owned (baseline included)
	Late       uint64 // events dropped: their window had closed
	Dropped    uint64 // keys not tracked: a cap was reached
	Evicted    uint64 // sources evicted because MaxSources was reached
}

// segInfo is what the engine knows of a destination segment.
type segInfo struct {
	name   string
	tags   []string
	bump   int  // severity levels added (pci-cde/sensitive: 1)
	crit   bool // "critical" tag
	scope  uint16
	unattr bool // carries UnattributedAccess.Tag
	pairs  []*pairState
}

type pairKey struct{ src, dst string }

type edgeKey struct {
	src, dst string
	port     uint16
	proto    uint8
}

// pairState is the forwarding side of one (src segment, dst segment) pair.
type pairState struct {
	key     pairKey
	keyStr  string
	buckets [4]volBucket
	edges   map[uint32]uint64 // port<<8|proto → last forwarded
	idents  map[string]uint64 // identity → last forwarded
}

type volBucket struct {
	minute, flows, bytes, last uint64
	used                       bool // minute set
}

// New returns an Engine. cfg must be valid (Configuration.Validate); m may be nil
// (no tags: severities are the base ones, unattributed_access never
// fires). emit and forward must not be nil.
func New(cfg Configuration, m *policy.Matcher, emit func(*schemas.Alert), forward func(*Keyed)) *Engine {
	e := &Engine{
		cfg: cfg, emit: emit, forward: forward,
		suppress: uint64(cfg.Suppress), lateness: uint64(cfg.Lateness),
		pairs:  map[pairKey]*pairState{},
		srcIdx: map[schemas.Addr]int32{},
		edges:  map[edgeKey]uint64{},
		vols:   map[pairKey]*volOwner{},
		idents: map[string]*identState{},
		users:  map[string]*userAuth{},
		supp:   map[string]uint64{},
	}
	e.win[kPolicy] = uint64(cfg.PolicyViolation.Window)
	e.win[kAddrScan] = uint64(cfg.AddressScan.Window)
	e.win[kPortScan] = uint64(cfg.PortScan.Window)
	e.win[kVolume] = uint64(time.Minute)
	e.win[kAuth] = uint64(cfg.AuthBruteforce.Window)
	e.win[kUnattr] = uint64(cfg.UnattributedAccess.Window)
	e.win[kLateral] = uint64(cfg.LateralChain.Window)
	e.win[kNewEdge] = uint64(time.Hour)
	for i := range e.win {
		if e.win[i] == 0 {
			e.win[i] = uint64(time.Minute)
		}
	}
	e.SetMatcher(m)
	return e
}

// SetMatcher replaces the policy used for tags (severity, scope,
// unattributed_access). m may be nil.
func (e *Engine) SetMatcher(m *policy.Matcher) {
	e.m = m
	e.segs = map[string]*segInfo{}
	e.lastSeg = nil
	if m != nil {
		e.addSeg(policy.External, nil)
		for _, s := range m.Policy().Segments {
			e.addSeg(s.Name, s.Tags)
		}
	}
}

// Stats returns the current counters.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.Sources = len(e.srcIdx)
	for i := range e.srcs {
		s.Aggregates += len(e.srcs[i].Aggs)
	}
	s.Edges = len(e.edges)
	return s
}

func (e *Engine) addSeg(name string, tags []string) *segInfo {
	si := &segInfo{name: name, tags: tags}
	for _, t := range tags {
		switch t {
		case "pci-cde", "sensitive":
			si.bump = 1
		case "critical":
			si.crit = true
		}
		if t == e.cfg.UnattributedAccess.Tag {
			si.unattr = true
		}
	}
	scopes := [nKinds]Scope{
		kPolicy: e.cfg.PolicyViolation.Scope, kNewEdge: e.cfg.NewEdge.Scope, kAddrScan: e.cfg.AddressScan.Scope,
		kPortScan: e.cfg.PortScan.Scope, kVolume: e.cfg.VolumeSpike.Scope, kAuth: e.cfg.AuthBruteforce.Scope,
		kUnattr: e.cfg.UnattributedAccess.Scope, kLateral: e.cfg.LateralChain.Scope,
	}
	for k, sc := range scopes {
		if sc.allows(name, tags) {
			si.scope |= 1 << k
		}
	}
	if len(e.segs) < maxSegments {
		e.segs[name] = si
	}
	return si
}

func (s Scope) allows(name string, tags []string) bool {
	if len(s.Segments) == 0 && len(s.Tags) == 0 {
		return true
	}
	for _, n := range s.Segments {
		if n == name {
			return true
		}
	}
	for _, t := range s.Tags {
		for _, u := range tags {
			if t == u {
				return true
			}
		}
	}
	return false
}

// seg returns the info of a segment name (destination side).
func (e *Engine) seg(name string) *segInfo {
	if s := e.lastSeg; s != nil && s.name == name {
		return s
	}
	s, ok := e.segs[name]
	if !ok {
		s = e.addSeg(name, nil)
	}
	e.lastSeg = s
	return s
}

func (s *segInfo) in(kind uint8) bool { return s.scope&(1<<kind) != 0 }

func (s *segInfo) severity(kind uint8, base schemas.Severity) schemas.Severity {
	if s != nil && s.crit {
		return schemas.SeverityCritical
	}
	if s != nil {
		base += schemas.Severity(s.bump)
	}
	return min(base, schemas.SeverityCritical)
}

func (e *Engine) pair(dst *segInfo, src string) *pairState {
	for _, p := range dst.pairs {
		if p.key.src == src {
			return p
		}
	}
	k := pairKey{src, dst.name}
	p, ok := e.pairs[k]
	if !ok {
		p = &pairState{key: k, keyStr: src + "|" + dst.name, edges: map[uint32]uint64{}, idents: map[string]uint64{}}
		e.pairs[k] = p
		e.pairList = append(e.pairList, p)
	}
	if len(dst.pairs) < 64 {
		dst.pairs = append(dst.pairs, p)
	}
	return p
}

// isReply reports the reply heuristic: a service source port (below 1024,
// or below 32768 when the destination port is in the dynamic range
// 32768-65535 that clients draw from) to an ephemeral destination port.
func isReply(f *schemas.Flow) bool {
	if f.Proto != policy.ProtoTCP && f.Proto != policy.ProtoUDP || f.DstPort < policy.EphemeralPortMin {
		return false
	}
	return f.SrcPort < policy.EphemeralPortMin || (f.DstPort >= 32768 && f.SrcPort < 32768)
}

// isProbe reports whether f looks like an unanswered connection attempt.
func isProbe(f *schemas.Flow) bool {
	switch f.Proto {
	case policy.ProtoTCP:
		if f.TCPFlags == 0 {
			return f.Packets <= 3
		}
		return f.TCPFlags&0x10 == 0
	case policy.ProtoUDP:
		return f.Packets <= 3
	case policy.ProtoICMP:
		return f.DstPort>>8 == 8
	case policy.ProtoICMPv6:
		return f.DstPort>>8 == 128
	}
	return false
}

// unanswered: TCP with flags known and no ACK: no communication happened.
func unanswered(f *schemas.Flow) bool {
	return f.Proto == policy.ProtoTCP && f.TCPFlags != 0 && f.TCPFlags&0x10 == 0
}

func sampled(v uint64, rate uint32) uint64 {
	if rate > 1 {
		return v * uint64(rate)
	}
	return v
}

// ObserveFlow feeds one enriched flow of batch b (b may be nil). It does
// not allocate in the steady state.
func (e *Engine) ObserveFlow(b *schemas.FlowBatch, f *schemas.Flow) {
	var received uint64
	if b != nil {
		received = b.TimeReceived
	}
	t, end := schemas.FlowSpan(f, received)
	if t == 0 {
		return
	}
	e.latest = max(e.latest, t)
	if e.learnStart == 0 || t < e.learnStart {
		e.learnStart = t
	}
	c := &e.cfg
	dst := e.seg(f.DstSegment)
	cross := f.SrcSegment != f.DstSegment && f.Verdict != schemas.VerdictIntraSegment
	reply := isReply(f)
	bytes := sampled(f.Bytes, f.SamplingRate)

	var ps *pairState
	if c.VolumeSpike.Enabled && dst.in(kVolume) {
		ps = e.pair(dst, f.SrcSegment)
		e.addVolume(ps, t, end, sampled(1, f.SamplingRate), bytes)
	}
	if c.NewEdge.Enabled && (cross || c.NewEdge.IntraSegment) && !reply && !unanswered(f) && dst.in(kNewEdge) {
		if ps == nil {
			ps = e.pair(dst, f.SrcSegment)
		}
		pk := uint32(f.DstPort)<<8 | uint32(f.Proto)
		if last, ok := ps.edges[pk]; !ok || t >= last+edgeRefresh {
			if len(ps.edges) >= maxForwardCache {
				clear(ps.edges)
			}
			ps.edges[pk] = t
			k := e.resetKeyed(kNewEdge)
			k.Key = edgeKeyString(f.SrcSegment, f.DstSegment, f.DstPort, f.Proto)
			k.Time, k.Last, k.Since = t, end, e.learnStart
			k.SrcSegment, k.DstSegment = f.SrcSegment, f.DstSegment
			k.SrcAddr, k.DstAddr, k.DstPort, k.Proto = f.SrcAddr, f.DstAddr, f.DstPort, f.Proto
			e.forward(k)
		}
	}
	if c.LateralChain.Enabled && cross && f.SrcIdentity != "" && !reply && f.SrcSegment != "" && f.DstSegment != "" {
		if ps == nil {
			ps = e.pair(dst, f.SrcSegment)
		}
		if last, ok := ps.idents[f.SrcIdentity]; !ok || t >= last+e.win[kLateral]/6 || t < last {
			if len(ps.idents) >= maxForwardCache {
				clear(ps.idents)
			}
			ps.idents[f.SrcIdentity] = t
			k := e.resetKeyed(kLateral)
			k.Key = f.SrcIdentity
			k.Time, k.Last = t, end
			k.SrcSegment, k.DstSegment = f.SrcSegment, f.DstSegment
			k.SrcAddr, k.DstAddr, k.DstPort, k.Proto = f.SrcAddr, f.DstAddr, f.DstPort, f.Proto
			e.forward(k)
		}
	}

	// Per-source detectors.
	violation := c.PolicyViolation.Enabled && f.Verdict == schemas.VerdictViolation && dst.in(kPolicy)
	unattr := c.UnattributedAccess.Enabled && dst.unattr && cross && f.SrcIdentity == "" && !reply && dst.in(kUnattr)
	addrScan := c.AddressScan.Enabled && cross && dst.in(kAddrScan)
	portScan := c.PortScan.Enabled && dst.in(kPortScan)
	if !violation && !unattr && !addrScan && !portScan {
		return
	}
	probeA := addrScan && (c.AddressScan.AllFlows || isProbe(f))
	probeP := portScan && (c.PortScan.AllFlows || isProbe(f))
	var s *srcState
	if violation || unattr || probeA || probeP {
		s = e.source(f.SrcAddr, t)
	} else {
		i, ok := e.srcIdx[f.SrcAddr]
		if !ok {
			return // answered flows only matter to sources already tracked
		}
		s = &e.srcs[i]
	}
	if s == nil {
		return
	}
	s.Last = max(s.Last, t)
	ev := flowEvent{f: f, t: t, end: end, bytes: bytes, dst: dst}
	if violation {
		e.observeAgg(s, kPolicy, &ev, true)
	}
	if unattr {
		e.observeAgg(s, kUnattr, &ev, true)
	}
	if addrScan && !reply {
		e.observeAgg(s, kAddrScan, &ev, probeA)
	}
	if portScan && !reply {
		e.observeAgg(s, kPortScan, &ev, probeP)
	}
}

type flowEvent struct {
	f      *schemas.Flow
	t, end uint64
	bytes  uint64
	dst    *segInfo
}

func (e *Engine) resetKeyed(kind uint8) *Keyed {
	e.keyed = Keyed{Kind: kindNames[kind]}
	return &e.keyed
}

func edgeKeyString(src, dst string, port uint16, proto uint8) string {
	return src + "|" + dst + "|" + strconv.Itoa(int(port)) + "|" + strconv.Itoa(int(proto))
}

// alertID is the deterministic alert id.
func alertID(kind uint8, key string, win uint64) string {
	h := sha256.New()
	h.Write([]byte(kindNames[kind]))
	h.Write([]byte{0})
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(strconv.AppendUint(nil, win, 10))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// suppressed reports whether a new alert for (kind, key) at t is
// suppressed, and returns the time it stops being.
func (e *Engine) suppressed(kind uint8, key string, t uint64) (bool, uint64) {
	last, ok := e.supp[suppKey(kind, key)]
	if ok && t < last+e.suppress {
		return true, last + e.suppress
	}
	return false, 0
}

func (e *Engine) markAlert(kind uint8, key string, t uint64) {
	e.supp[suppKey(kind, key)] = t
}

func suppKey(kind uint8, key string) string { return kindNames[kind] + "\x00" + key }

// LatestEvent returns the latest event time observed, in Unix ns: the
// stage's watermark when event time runs ahead of the wall clock
// (replays, compressed scenarios).
func (e *Engine) LatestEvent() uint64 { return e.latest }

// Advance moves the engine's clock to now (Unix ns; the stage passes
// max(event time seen, wall clock)): windows whose end + Lateness is
// before now close (Update emissions), per-minute volume partials are
// forwarded and owned volume minutes evaluated, idle state is dropped.
func (e *Engine) Advance(now uint64) {
	if now < e.now {
		now = e.now
	}
	e.now = now
	e.flushVolume(now, false)
	e.closeVolumes(now)
	e.closePending(now)
	if now >= e.nextSweep {
		e.sweep(now)
		e.nextSweep = now + uint64(time.Minute)
	}
}

func fmtDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") || strings.HasSuffix(s, "h0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func portProto(port uint16, proto uint8) string {
	switch proto {
	case policy.ProtoTCP:
		return strconv.Itoa(int(port)) + "/tcp"
	case policy.ProtoUDP:
		return strconv.Itoa(int(port)) + "/udp"
	case policy.ProtoICMP:
		return "icmp type " + strconv.Itoa(int(port>>8))
	case policy.ProtoICMPv6:
		return "icmpv6 type " + strconv.Itoa(int(port>>8))
	}
	return "proto " + strconv.Itoa(int(proto))
}
