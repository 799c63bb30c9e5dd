package engine

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// srcState is one tracked source address. Fields are exported for the
// snapshot encoding only.
type srcState struct {
	Addr schemas.Addr
	Last uint64
	Used bool
	Aggs []*agg
}

// agg is one window of a windowed detector: per-source policy_violation,
// unattributed_access, address_scan, port_scan, auth_bruteforce, and the
// per-user auth_bruteforce windows an owner keeps.
type agg struct {
	Kind     uint8
	Success  bool // auth_bruteforce: the success-after-failures finding
	ByUser   bool // auth_bruteforce keyed by user
	Src, Dst schemas.Addr
	SrcSeg   string
	DstSeg   string
	Identity string // source identity; auth: the user
	Port     uint16
	Proto    uint8
	Win      uint64 // window start
	First    uint64
	Last     uint64
	Count    uint64 // what the alert counts (flows, distinct hosts/ports, failures)
	Flows    uint64 // flows or attempts counted
	Est      uint64 // scans: answered flows of the key
	Bytes    uint64
	Set      []uint64 // distinct values (scans: targets; user auth: sources)
	Samples  []schemas.Addr
	Capped   bool

	Alerted   bool
	Closed    bool
	AlertTime uint64
	SentCount uint64
	SentBytes uint64
	SentLast  uint64
	SuppUntil uint64
}

type pendingAgg struct {
	a   *agg
	win uint64
}

const maxSamples = 8

func addrHash(a *schemas.Addr) uint64 {
	h := binary.LittleEndian.Uint64(a[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(a[8:])
	h ^= h >> 31
	h *= 0xbf58476d1ce4e5b9
	return h ^ h>>29
}

// source returns the state of addr, creating it (and evicting another
// when MaxSources is reached). nil when nothing could be evicted.
func (e *Engine) source(addr schemas.Addr, t uint64) *srcState {
	if i, ok := e.srcIdx[addr]; ok {
		return &e.srcs[i]
	}
	var i int32
	switch {
	case len(e.free) > 0:
		i = e.free[len(e.free)-1]
		e.free = e.free[:len(e.free)-1]
	case len(e.srcIdx) < e.cfg.MaxSources:
		e.srcs = append(e.srcs, srcState{})
		i = int32(len(e.srcs) - 1)
	default:
		i = e.evictOne()
		if i < 0 {
			e.stats.Dropped++
			return nil
		}
		e.stats.Evicted++
	}
	s := &e.srcs[i]
	s.Addr, s.Last, s.Used = addr, t, true
	e.srcIdx[addr] = i
	return s
}

// evictOne frees the least recently seen of evictSample slots examined
// round-robin and returns its index, or -1.
func (e *Engine) evictOne() int32 {
	n := len(e.srcs)
	best := int32(-1)
	for j := 0; j < evictSample && j < n; j++ {
		e.hand = (e.hand + 1) % n
		s := &e.srcs[e.hand]
		if s.Used && (best < 0 || s.Last < e.srcs[best].Last) {
			best = int32(e.hand)
		}
	}
	if best >= 0 {
		e.release(&e.srcs[best])
	}
	return best
}

// release forgets a source; its aggregates that still await their window's
// close stay referenced by e.pending.
func (e *Engine) release(s *srcState) {
	delete(e.srcIdx, s.Addr)
	clear(s.Aggs)
	*s = srcState{Aggs: s.Aggs[:0]}
}

func (a *agg) pending() bool { return a.Alerted && !a.Closed }

// findAgg returns the source's aggregate for the key of ev, nil when none.
func (s *srcState) findAgg(kind uint8, ev *flowEvent) *agg {
	f := ev.f
	for _, a := range s.Aggs {
		if a.Kind != kind {
			continue
		}
		switch kind {
		case kPortScan:
			if a.Dst == f.DstAddr {
				return a
			}
		case kAuth:
			return a
		default:
			if a.Port == f.DstPort && a.Proto == f.Proto && a.DstSeg == f.DstSegment {
				return a
			}
		}
	}
	return nil
}

// newAgg adds an aggregate to s, reusing one whose window is over when
// MaxKeysPerSource is reached; nil when none can be.
func (e *Engine) newAgg(s *srcState, t uint64) *agg {
	if len(s.Aggs) < e.cfg.MaxKeysPerSource {
		a := &agg{}
		s.Aggs = append(s.Aggs, a)
		return a
	}
	var best *agg
	for _, a := range s.Aggs {
		if a.pending() || a.Win+e.win[a.Kind] > t {
			continue
		}
		if best == nil || a.Last < best.Last {
			best = a
		}
	}
	if best == nil {
		e.stats.Dropped++
		return nil
	}
	set, samples := best.Set[:0], best.Samples[:0]
	*best = agg{Set: set, Samples: samples}
	return best
}

// roll moves a to the window of t; false when t is late for a.
func (e *Engine) roll(a *agg, t uint64) bool {
	ws := t - t%e.win[a.Kind]
	if ws < a.Win || (ws == a.Win && a.Closed) {
		e.stats.Late++
		return false
	}
	if ws > a.Win {
		e.closeAgg(a)
		a.Win = ws
		a.First, a.Last, a.Count, a.Flows, a.Est, a.Bytes = t, t, 0, 0, 0, 0
		a.Set, a.Samples, a.Capped = a.Set[:0], a.Samples[:0], false
		a.Alerted, a.Closed, a.AlertTime, a.SentCount, a.SentBytes, a.SentLast = false, false, 0, 0, 0, 0
	}
	return true
}

// observeAgg counts a flow into the source's aggregate of kind. counts is
// false for answered flows of a scan key (they only raise Est).
func (e *Engine) observeAgg(s *srcState, kind uint8, ev *flowEvent, counts bool) {
	f := ev.f
	a := s.findAgg(kind, ev)
	if a == nil {
		if !counts {
			return
		}
		if a = e.newAgg(s, ev.t); a == nil {
			return
		}
		a.Kind, a.Src, a.Dst = kind, f.SrcAddr, f.DstAddr
		a.SrcSeg, a.DstSeg, a.Port, a.Proto = f.SrcSegment, f.DstSegment, f.DstPort, f.Proto
		a.Win = ev.t - ev.t%e.win[kind]
		a.First = ev.t
	}
	if !e.roll(a, ev.t) {
		return
	}
	if !counts {
		a.Est++
		return
	}
	a.First, a.Last = min(a.First, ev.t), max(a.Last, ev.end)
	a.Flows++
	a.Bytes += ev.bytes
	if f.SrcIdentity != "" {
		a.Identity = f.SrcIdentity
	}
	var threshold int
	var cfg *ScanConfig
	switch kind {
	case kPolicy, kUnattr:
		a.Count = a.Flows
		min := e.cfg.PolicyViolation.MinFlows
		if kind == kUnattr {
			min = e.cfg.UnattributedAccess.MinFlows
		}
		if a.Count >= max(min, 1) && !a.Alerted {
			e.tryAlert(a, ev.t)
		}
		return
	case kAddrScan:
		cfg = &e.cfg.AddressScan
		threshold = cfg.Threshold
		e.addDistinct(a, addrHash(&f.DstAddr), cfg.MaxTracked, f.DstAddr)
	case kPortScan:
		cfg = &e.cfg.PortScan
		threshold = cfg.Threshold
		e.addDistinct(a, uint64(f.DstPort)|uint64(f.Proto)<<16, cfg.MaxTracked, schemas.Addr{})
	}
	a.Count = uint64(len(a.Set))
	if !a.Alerted && len(a.Set) >= threshold && float64(a.Flows) >= cfg.MinProbeShare*float64(a.Flows+a.Est) {
		e.tryAlert(a, ev.t)
	}
}

func (e *Engine) addDistinct(a *agg, v uint64, maxTracked int, sample schemas.Addr) {
	for _, x := range a.Set {
		if x == v {
			return
		}
	}
	if len(a.Set) >= maxTracked {
		a.Capped = true
		return
	}
	a.Set = append(a.Set, v)
	if sample != (schemas.Addr{}) && len(a.Samples) < maxSamples {
		a.Samples = append(a.Samples, sample)
	}
}

// tryAlert raises the first emission of a's window unless suppressed.
func (e *Engine) tryAlert(a *agg, t uint64) {
	if t < a.SuppUntil {
		return
	}
	key := a.key()
	if sup, until := e.suppressed(a.Kind, key, t); sup {
		a.SuppUntil = until
		return
	}
	a.Alerted, a.AlertTime = true, t
	e.markAlert(a.Kind, key, t)
	e.pending = append(e.pending, pendingAgg{a, a.Win})
	e.emitAgg(a, key, false)
}

// closeAgg ends a's window: an Update emission if it alerted and changed.
func (e *Engine) closeAgg(a *agg) {
	if a.pending() && (a.Count != a.SentCount || a.Bytes != a.SentBytes || a.Last != a.SentLast) {
		e.emitAgg(a, a.key(), true)
	}
	a.Closed = true
}

func (e *Engine) closePending(now uint64) {
	keep := e.pending[:0]
	for _, p := range e.pending {
		a := p.a
		if a.Win != p.win || !a.pending() {
			continue
		}
		if now >= a.Win+e.win[a.Kind]+e.lateness {
			e.closeAgg(a)
			continue
		}
		keep = append(keep, p)
	}
	clear(e.pending[len(keep):])
	e.pending = keep
}

// key is a's alert key (see Engine).
func (a *agg) key() string {
	var k string
	switch a.Kind {
	case kPortScan:
		k = a.Src.String() + "|" + a.Dst.String()
	case kAuth:
		if a.ByUser {
			k = "user|" + a.Identity
		} else {
			k = "src|" + a.Src.String()
		}
		if a.Success {
			k += "|success"
		}
	default:
		k = a.Src.String() + "|" + a.DstSeg + "|" + strconv.Itoa(int(a.Port)) + "|" + strconv.Itoa(int(a.Proto))
	}
	return k
}

func (e *Engine) emitAgg(a *agg, key string, update bool) {
	dst := e.seg(a.DstSeg)
	base := baseSeverity[a.Kind]
	if a.Kind == kAuth && a.Success {
		base = schemas.SeverityHigh
	}
	al := &schemas.Alert{
		ID:          alertID(a.Kind, key, a.Win),
		Time:        a.AlertTime,
		Kind:        kindNames[a.Kind],
		Severity:    dst.severity(a.Kind, base),
		SrcAddr:     a.Src,
		DstAddr:     a.Dst,
		SrcSegment:  a.SrcSeg,
		DstSegment:  a.DstSeg,
		SrcIdentity: a.Identity,
		DstPort:     a.Port,
		Proto:       a.Proto,
		FirstSeen:   a.First,
		LastSeen:    a.Last,
		Count:       a.Count,
		Bytes:       a.Bytes,
		Update:      update,
	}
	w := fmtDur(time.Duration(e.win[a.Kind]))
	atLeast := ""
	if a.Capped {
		atLeast = "at least "
	}
	ev := map[string]any{"window_start": a.Win, "window": w}
	switch a.Kind {
	case kPolicy:
		al.Summary = fmt.Sprintf("%s (%s) sent %d %s to %s on %s that no rule allows, within %s",
			a.Src, a.SrcSeg, a.Count, plural(a.Count, "flow"), a.DstSeg, portProto(a.Port, a.Proto), w)
		ev["flows"], ev["sample_dst"] = a.Flows, a.Dst.String()
	case kUnattr:
		al.Summary = fmt.Sprintf("%s (%s) sent %d %s to %s (tagged %s) on %s without an identity, within %s",
			a.Src, a.SrcSeg, a.Count, plural(a.Count, "flow"), a.DstSeg, e.cfg.UnattributedAccess.Tag, portProto(a.Port, a.Proto), w)
		ev["flows"], ev["sample_dst"], ev["tag"] = a.Flows, a.Dst.String(), e.cfg.UnattributedAccess.Tag
	case kAddrScan:
		al.DstAddr = schemas.Addr{}
		al.Summary = fmt.Sprintf("%s (%s) reached %s%d hosts in %s on %s within %s",
			a.Src, a.SrcSeg, atLeast, a.Count, a.DstSeg, portProto(a.Port, a.Proto), w)
		ev["threshold"], ev["attempts"], ev["answered"], ev["capped"] = e.cfg.AddressScan.Threshold, a.Flows, a.Est, a.Capped
		ev["sample_targets"] = addrStrings(a.Samples)
	case kPortScan:
		al.DstPort = 0
		al.Summary = fmt.Sprintf("%s (%s) probed %s%d ports of %s (%s) within %s",
			a.Src, a.SrcSeg, atLeast, a.Count, a.Dst, a.DstSeg, w)
		ports := make([]string, 0, 16)
		for _, v := range a.Set {
			if len(ports) == cap(ports) {
				break
			}
			ports = append(ports, portProto(uint16(v), uint8(v>>16)))
		}
		ev["threshold"], ev["attempts"], ev["answered"], ev["capped"] = e.cfg.PortScan.Threshold, a.Flows, a.Est, a.Capped
		ev["sample_ports"] = ports
	case kAuth:
		who := a.Src.String()
		if a.ByUser {
			who = "user " + a.Identity
			ev["distinct_sources"], ev["sample_sources"] = len(a.Set), addrStrings(a.Samples)
			al.SrcAddr = schemas.Addr{}
			if len(a.Samples) > 0 {
				al.SrcAddr = a.Samples[0]
			}
		}
		ev["failures"], ev["threshold"] = a.Count, e.cfg.AuthBruteforce.Threshold
		if a.Success {
			al.Summary = fmt.Sprintf("%s logged in as %s after %d failed %s within %s",
				al.SrcAddr, quoteUser(a.Identity), a.Count, plural(a.Count, "login"), w)
			if a.ByUser {
				al.Summary = fmt.Sprintf("user %s logged in from %s after %d failed %s from %d sources within %s",
					a.Identity, al.SrcAddr, a.Count, plural(a.Count, "login"), len(a.Set), w)
			}
		} else {
			al.Summary = fmt.Sprintf("%s failed %d %s within %s", who, a.Count, plural(a.Count, "login"), w)
			if a.ByUser {
				al.Summary = fmt.Sprintf("user %s failed %d %s from %d sources within %s",
					a.Identity, a.Count, plural(a.Count, "login"), len(a.Set), w)
			}
		}
		ev["success_after_failures"] = a.Success
	}
	al.Evidence = evidence(ev)
	a.SentCount, a.SentBytes, a.SentLast = a.Count, a.Bytes, a.Last
	e.emit(al)
}

func quoteUser(u string) string {
	if u == "" {
		return "an unknown user"
	}
	return u
}

func plural(n uint64, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

func addrStrings(as []schemas.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func evidence(m map[string]any) string {
	b, err := json.Marshal(m)
	if err != nil {
		return "{}"
	}
	return string(b)
}

// ObserveAccess feeds one access event (partitioned by source address).
// Failed logins (Outcome failure) and successful logins (Action login or
// session_open with Outcome success) feed auth_bruteforce per source
// locally and per user (forwarded, Key = the user).
func (e *Engine) ObserveAccess(ev *schemas.AccessEvent) {
	if !e.cfg.AuthBruteforce.Enabled {
		return
	}
	t := ev.Time
	if t == 0 {
		t = ev.Received
	}
	e.latest = max(e.latest, t)
	fail := ev.Outcome == schemas.OutcomeFailure
	succ := ev.Outcome == schemas.OutcomeSuccess && (ev.Action == schemas.ActionLogin || ev.Action == schemas.ActionSessionOpen)
	if t == 0 || (!fail && !succ) {
		return
	}
	if e.learnStart == 0 || t < e.learnStart {
		e.learnStart = t
	}
	srcSeg, dstSeg := "", ""
	if e.m != nil {
		srcSeg = e.m.Lookup(ev.SrcAddr).Segment
		if ev.DstAddr != (schemas.Addr{}) {
			dstSeg = e.m.Lookup(ev.DstAddr).Segment
		}
	}
	if !e.seg(dstSeg).in(kAuth) {
		return
	}
	if ev.User != "" {
		k := e.resetKeyed(kAuth)
		k.Key, k.Time, k.Last = ev.User, t, t
		k.SrcAddr, k.DstAddr, k.DstPort, k.Outcome = ev.SrcAddr, ev.DstAddr, ev.DstPort, ev.Outcome
		k.SrcSegment, k.DstSegment = srcSeg, dstSeg
		e.forward(k)
	}
	if ev.SrcAddr == (schemas.Addr{}) {
		return
	}
	s := e.source(ev.SrcAddr, t)
	if s == nil {
		return
	}
	s.Last = max(s.Last, t)
	var fa, sa *agg
	for _, a := range s.Aggs {
		if a.Kind == kAuth {
			if a.Success {
				sa = a
			} else {
				fa = a
			}
		}
	}
	ae := authEvent{t: t, src: ev.SrcAddr, dst: ev.DstAddr, port: ev.DstPort, user: ev.User, srcSeg: srcSeg, dstSeg: dstSeg}
	if fail {
		if fa == nil {
			if fa = e.newAgg(s, t); fa == nil {
				return
			}
			fa.Kind, fa.Win = kAuth, t-t%e.win[kAuth]
		}
		e.authFailure(fa, &ae, 0)
		return
	}
	if fa == nil || fa.Count < e.cfg.AuthBruteforce.Threshold {
		return
	}
	if sa == nil {
		if sa = e.newAgg(s, t); sa == nil {
			return
		}
		sa.Kind, sa.Success = kAuth, true
	}
	e.authSuccess(fa, sa, &ae, 0)
}

type authEvent struct {
	t              uint64
	src, dst       schemas.Addr
	port           uint16
	user           string
	srcSeg, dstSeg string
}

// authFailure counts a failed login into fa; minSources is the number of
// distinct sources needed (per user: 2, the per-source detector covers 1).
func (e *Engine) authFailure(fa *agg, ev *authEvent, minSources int) {
	if fa.Count == 0 && fa.Flows == 0 {
		fa.First = ev.t
	}
	if !e.roll(fa, ev.t) {
		return
	}
	fa.First, fa.Last = min(fa.First, ev.t), max(fa.Last, ev.t)
	fa.Count++
	fa.Flows++
	fa.Src, fa.Dst, fa.Port, fa.SrcSeg, fa.DstSeg = ev.src, ev.dst, ev.port, ev.srcSeg, ev.dstSeg
	if ev.user != "" {
		fa.Identity = ev.user
	}
	if fa.ByUser {
		e.addDistinct(fa, addrHash(&ev.src), userSourceSample, ev.src)
	}
	if !fa.Alerted && fa.Count >= e.cfg.AuthBruteforce.Threshold && len(fa.Set) >= minSources {
		e.tryAlert(fa, ev.t)
	}
}

// authSuccess raises success-after-failures when fa (the failures of the
// same source or user) reached the threshold within Window before t.
func (e *Engine) authSuccess(fa, sa *agg, ev *authEvent, minSources int) {
	w := e.win[kAuth]
	if fa.Count < e.cfg.AuthBruteforce.Threshold || ev.t < fa.First || ev.t > fa.Last+w || len(fa.Set) < minSources {
		return
	}
	if sa.Win != fa.Win || sa.Closed {
		if sa.Win > fa.Win {
			e.stats.Late++
			return
		}
		e.closeAgg(sa)
		set, samples := sa.Set[:0], sa.Samples[:0]
		*sa = agg{Kind: kAuth, Success: true, ByUser: fa.ByUser, Set: set, Samples: samples}
		sa.Win = fa.Win
	}
	sa.Src, sa.Dst, sa.Port, sa.SrcSeg, sa.DstSeg = ev.src, ev.dst, ev.port, ev.srcSeg, ev.dstSeg
	sa.Identity = ev.user
	if fa.ByUser {
		sa.Identity = fa.Identity
		sa.Set = append(sa.Set[:0], fa.Set...)
		sa.Samples = append(sa.Samples[:0], ev.src)
	}
	sa.First, sa.Last, sa.Count, sa.Flows = fa.First, ev.t, fa.Count, fa.Flows
	if !sa.Alerted {
		e.tryAlert(sa, ev.t)
	}
}
