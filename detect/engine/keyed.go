package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// Keyed is an event for a keyed (global-view) detector. The stage routes it
// by Key (the Kafka record key of the re-key topic) to the engine owning
// the key, which calls ObserveKeyed. Fields per Kind:
//
//   - new_edge: Key "src|dst|port|proto"; segments, port, proto, a sample
//     flow's addresses; Time the flow's time; Since the sender's learning
//     start. Sent on an engine's first sighting of the edge and hourly.
//   - volume_spike: Key "src|dst" (segments); Time the minute start, Last
//     the newest flow; Count flows and Bytes bytes (sampling applied) the
//     sender saw in that minute since its previous partial.
//   - lateral_chain: Key the identity; one hop: segments, addresses, port,
//     proto, Time. Sent on first sighting and every Window/6.
//   - auth_bruteforce: Key the user; SrcAddr, DstAddr, DstPort, Outcome
//     (failure or success), segments, Time.
type Keyed struct {
	Kind       string // schemas.Alert* kind
	Key        string
	Time       uint64 // Unix ns, event time
	Last       uint64
	Since      uint64
	SrcSegment string
	DstSegment string
	SrcAddr    schemas.Addr
	DstAddr    schemas.Addr
	DstPort    uint16
	Proto      uint8
	Outcome    schemas.Outcome
	Count      uint64
	Bytes      uint64
}

const keyedVersion = 1

// MarshalBinary encodes k compactly: a version byte, the kind code, then
// varints and length-prefixed strings; zero addresses take one byte.
func (k *Keyed) MarshalBinary() ([]byte, error) {
	kc, ok := kindCode(k.Kind)
	if !ok {
		return nil, fmt.Errorf("engine: keyed kind %q unknown", k.Kind)
	}
	b := make([]byte, 0, 64+len(k.Key)+len(k.SrcSegment)+len(k.DstSegment))
	b = append(b, keyedVersion, kc, byte(k.Outcome), k.Proto)
	b = binary.AppendUvarint(b, uint64(k.DstPort))
	for _, s := range [...]string{k.Key, k.SrcSegment, k.DstSegment} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, v := range [...]uint64{k.Time, k.Last, k.Since, k.Count, k.Bytes} {
		b = binary.AppendUvarint(b, v)
	}
	for _, a := range [...]*schemas.Addr{&k.SrcAddr, &k.DstAddr} {
		switch {
		case *a == schemas.Addr{}:
			b = append(b, 0)
		case a.Is4():
			b = append(b, 4)
			b = append(b, a[12:]...)
		default:
			b = append(b, 16)
			b = append(b, a[:]...)
		}
	}
	return b, nil
}

var errKeyedShort = errors.New("engine: keyed event truncated")

// UnmarshalBinary decodes what MarshalBinary encoded; malformed input is an
// error, never a panic.
func (k *Keyed) UnmarshalBinary(b []byte) error {
	if len(b) < 4 {
		return errKeyedShort
	}
	if b[0] != keyedVersion {
		return fmt.Errorf("engine: keyed event version %d unsupported", b[0])
	}
	if b[1] >= nKinds {
		return fmt.Errorf("engine: keyed kind code %d unknown", b[1])
	}
	var out Keyed
	out.Kind, out.Outcome, out.Proto = kindNames[b[1]], schemas.Outcome(b[2]), b[3]
	b = b[4:]
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errKeyedShort
		}
		b = b[n:]
		return v, nil
	}
	port, err := uv()
	if err != nil {
		return err
	}
	if port > math.MaxUint16 {
		return errors.New("engine: keyed port out of range")
	}
	out.DstPort = uint16(port)
	for _, s := range [...]*string{&out.Key, &out.SrcSegment, &out.DstSegment} {
		n, err := uv()
		if err != nil {
			return err
		}
		if n > uint64(len(b)) {
			return errKeyedShort
		}
		*s = string(b[:n])
		b = b[n:]
	}
	for _, v := range [...]*uint64{&out.Time, &out.Last, &out.Since, &out.Count, &out.Bytes} {
		if *v, err = uv(); err != nil {
			return err
		}
	}
	for _, a := range [...]*schemas.Addr{&out.SrcAddr, &out.DstAddr} {
		if len(b) < 1 {
			return errKeyedShort
		}
		n := int(b[0])
		b = b[1:]
		if (n != 0 && n != 4 && n != 16) || len(b) < n {
			return errors.New("engine: keyed address malformed")
		}
		*a = schemas.AddrFromSlice(b[:n])
		b = b[n:]
	}
	if len(b) != 0 {
		return errors.New("engine: keyed event has trailing bytes")
	}
	*k = out
	return nil
}

// Edge is one known new_edge edge (ClickHouse observed_edges).
type Edge struct {
	SrcSegment, DstSegment string
	DstPort                uint16
	Proto                  uint8
	LastSeen               uint64 // Unix ns
}

// LoadBaseline adds known edges (keeping the newest LastSeen). Learning
// then counts from the oldest LastSeen loaded if that is earlier than the
// engine's first event: a baseline with an hour of history ends learning.
func (e *Engine) LoadBaseline(edges []Edge) {
	for _, ed := range edges {
		k := edgeKey{ed.SrcSegment, ed.DstSegment, ed.DstPort, ed.Proto}
		if ed.LastSeen > e.edges[k] {
			e.edges[k] = ed.LastSeen
		}
		if ed.LastSeen != 0 && (e.learnStart == 0 || ed.LastSeen < e.learnStart) {
			e.learnStart = ed.LastSeen
		}
	}
}

// Baseline returns the edges the engine owns, for persisting.
func (e *Engine) Baseline() []Edge {
	out := make([]Edge, 0, len(e.edges))
	for k, v := range e.edges {
		out = append(out, Edge{k.src, k.dst, k.port, k.proto, v})
	}
	return out
}

// ObserveKeyed feeds a Keyed event routed to this engine (the owner of
// k.Key). Unknown kinds are ignored.
func (e *Engine) ObserveKeyed(k *Keyed) {
	kc, ok := kindCode(k.Kind)
	if !ok || k.Time == 0 {
		return
	}
	e.latest = max(e.latest, k.Time)
	switch kc {
	case kNewEdge:
		e.observeEdge(k)
	case kVolume:
		e.observePartial(k)
	case kLateral:
		e.observeHop(k)
	case kAuth:
		e.observeUserAuth(k)
	}
}

func (e *Engine) observeEdge(k *Keyed) {
	if !e.cfg.NewEdge.Enabled {
		return
	}
	if k.Since != 0 && (e.learnStart == 0 || k.Since < e.learnStart) {
		e.learnStart = k.Since
	}
	if e.learnStart == 0 || k.Time < e.learnStart {
		e.learnStart = k.Time
	}
	ek := edgeKey{k.SrcSegment, k.DstSegment, k.DstPort, k.Proto}
	last, known := e.edges[ek]
	if known && k.Time < last+uint64(e.cfg.NewEdge.Baseline) {
		e.edges[ek] = max(last, k.Time)
		return
	}
	if !known && len(e.edges) >= maxOwnedKeys {
		e.stats.Dropped++
		return
	}
	e.edges[ek] = max(last, k.Time)
	if k.Time < e.learnStart+uint64(e.cfg.NewEdge.Learning) {
		return
	}
	dst := e.seg(k.DstSegment)
	if !dst.in(kNewEdge) {
		return
	}
	if sup, _ := e.suppressed(kNewEdge, k.Key, k.Time); sup {
		return
	}
	e.markAlert(kNewEdge, k.Key, k.Time)
	win := k.Time - k.Time%e.win[kNewEdge]
	summary := fmt.Sprintf("new edge %s → %s on %s, not seen in the last %s (e.g. %s → %s)",
		k.SrcSegment, k.DstSegment, portProto(k.DstPort, k.Proto), fmtDur(e.cfg.NewEdge.Baseline), k.SrcAddr, k.DstAddr)
	ev := map[string]any{"baseline": fmtDur(e.cfg.NewEdge.Baseline), "sample_src": k.SrcAddr.String(),
		"sample_dst": k.DstAddr.String(), "previously_seen": known}
	if known {
		ev["last_seen_before"] = last
	}
	e.emit(&schemas.Alert{
		ID: alertID(kNewEdge, k.Key, win), Time: k.Time, Kind: kindNames[kNewEdge],
		Severity: dst.severity(kNewEdge, baseSeverity[kNewEdge]),
		SrcAddr:  k.SrcAddr, DstAddr: k.DstAddr, SrcSegment: k.SrcSegment, DstSegment: k.DstSegment,
		DstPort: k.DstPort, Proto: k.Proto, FirstSeen: k.Time, LastSeen: max(k.Last, k.Time), Count: 1,
		Summary: summary, Evidence: evidence(ev),
	})
}

// Volume: the forwarding side.

// addVolume adds a flow to the pair's minute buckets; a flow spanning
// minutes is split in proportion to its time in each (minutes before the
// last three count in the oldest of those).
func (e *Engine) addVolume(p *pairState, t, end, flows, bytes uint64) {
	const minute = uint64(time.Minute)
	if end/minute == t/minute || end <= t {
		e.addBucket(p, t, end, flows, bytes)
		return
	}
	from := max(t, end-end%minute-2*minute)
	dur := end - t
	left := bytes
	for m := end - end%minute; ; m -= minute {
		s := max(m, from)
		if s <= from {
			e.addBucket(p, from, end, flows, left)
			return
		}
		part := uint64(float64(bytes) * float64(min(end, m+minute)-s) / float64(dur))
		part = min(part, left)
		left -= part
		e.addBucket(p, s, end, 0, part)
	}
}

func (e *Engine) addBucket(p *pairState, t, end, flows, bytes uint64) {
	minute := t - t%uint64(time.Minute)
	b := &p.buckets[(minute/uint64(time.Minute))%uint64(len(p.buckets))]
	if !b.used || b.minute != minute {
		if b.used && b.minute > minute {
			e.stats.Late++
			return
		}
		e.flushBucket(p, b)
		*b = volBucket{minute: minute, used: true}
	}
	b.flows += flows
	b.bytes += bytes
	b.last = max(b.last, end)
}

func (e *Engine) flushBucket(p *pairState, b *volBucket) {
	if !b.used || (b.flows == 0 && b.bytes == 0) {
		return
	}
	k := e.resetKeyed(kVolume)
	k.Key, k.Time, k.Last = p.keyStr, b.minute, b.last
	k.SrcSegment, k.DstSegment = p.key.src, p.key.dst
	k.Count, k.Bytes = b.flows, b.bytes
	b.flows, b.bytes = 0, 0
	e.forward(k)
}

// flushVolume forwards the partials of minutes whose end + Lateness is
// before now (all when force).
func (e *Engine) flushVolume(now uint64, force bool) {
	for _, p := range e.pairList {
		for i := range p.buckets {
			b := &p.buckets[i]
			if b.used && (b.flows > 0 || b.bytes > 0) && (force || b.minute+uint64(time.Minute)+e.lateness <= now) {
				e.flushBucket(p, b)
			}
		}
	}
}

// Volume: the owner side.

// volOwner is the owner's state of one segment pair. Exported fields for
// the snapshot.
type volOwner struct {
	Src, Dst   string
	Key        string
	Mean, Var  float64
	N          uint64
	LastClosed uint64 // start of the last minute folded into the stats
	Run        uint64 // consecutive minutes above the limit
	RunStart   uint64
	RunBytes   uint64
	RunFlows   uint64
	Open       []volMinute
}

type volMinute struct {
	Minute, Flows, Bytes, Last uint64
}

func (e *Engine) observePartial(k *Keyed) {
	if !e.cfg.VolumeSpike.Enabled {
		return
	}
	pk := pairKey{k.SrcSegment, k.DstSegment}
	v := e.vols[pk]
	if v == nil {
		if len(e.vols) >= maxOwnedKeys {
			e.stats.Dropped++
			return
		}
		v = &volOwner{Src: k.SrcSegment, Dst: k.DstSegment, Key: k.Key}
		e.vols[pk] = v
		e.volList = append(e.volList, v)
	}
	minute := k.Time - k.Time%uint64(time.Minute)
	if v.N > 0 && minute <= v.LastClosed {
		e.stats.Late++
		return
	}
	for i := range v.Open {
		m := &v.Open[i]
		if m.Minute == minute {
			m.Flows += k.Count
			m.Bytes += k.Bytes
			m.Last = max(m.Last, k.Last)
			return
		}
	}
	if len(v.Open) >= 16 {
		e.stats.Dropped++
		return
	}
	v.Open = append(v.Open, volMinute{minute, k.Count, k.Bytes, k.Last})
}

// closeVolumes evaluates the owned minutes whose end + 2×Lateness (one for
// the senders' flush, one for transit) is before now, oldest first.
func (e *Engine) closeVolumes(now uint64) {
	for _, v := range e.volList {
		for len(v.Open) > 0 {
			oi := 0
			for i := range v.Open {
				if v.Open[i].Minute < v.Open[oi].Minute {
					oi = i
				}
			}
			m := v.Open[oi]
			if m.Minute+uint64(time.Minute)+2*e.lateness > now {
				break
			}
			v.Open[oi] = v.Open[len(v.Open)-1]
			v.Open = v.Open[:len(v.Open)-1]
			e.closeMinute(v, m)
		}
	}
}

func (e *Engine) closeMinute(v *volOwner, m volMinute) {
	c := &e.cfg.VolumeSpike
	if v.N > 0 {
		gap := (m.Minute - v.LastClosed) / uint64(time.Minute)
		if gap > 1 {
			v.Run, v.RunBytes, v.RunFlows = 0, 0, 0
		}
		for i := uint64(1); i < gap && i <= maxZeroFill; i++ {
			v.update(0, c.Alpha)
		}
	}
	x := float64(m.Bytes)
	sd := math.Sqrt(v.Var)
	limit := v.Mean + c.K*sd
	warm := v.N >= uint64(c.MinSamples)
	if warm && x > limit && m.Bytes >= c.MinBytes && x >= c.MinRatio*v.Mean {
		if v.Run == 0 {
			v.RunStart = m.Minute
		}
		v.Run++
		v.RunBytes += m.Bytes
		v.RunFlows += m.Flows
		if v.Run == uint64(c.Sustain) {
			e.volumeAlert(v, m, sd, limit)
		}
	} else {
		v.Run, v.RunBytes, v.RunFlows = 0, 0, 0
	}
	if warm && x > limit {
		x = limit // winsorized: a spike does not inflate the statistics it is judged by
	}
	v.update(x, c.Alpha)
	v.LastClosed = m.Minute
}

func (e *Engine) volumeAlert(v *volOwner, m volMinute, sd, limit float64) {
	c := &e.cfg.VolumeSpike
	dst := e.seg(v.Dst)
	if !dst.in(kVolume) {
		return
	}
	last := max(m.Last, m.Minute)
	if sup, _ := e.suppressed(kVolume, v.Key, last); sup {
		return
	}
	e.markAlert(kVolume, v.Key, last)
	ts := time.Unix(0, int64(v.RunStart)).UTC().Format("15:04")
	mins := fmtDur(time.Duration(v.Run) * time.Minute)
	e.emit(&schemas.Alert{
		ID: alertID(kVolume, v.Key, v.RunStart), Time: last, Kind: kindNames[kVolume],
		Severity:   dst.severity(kVolume, baseSeverity[kVolume]),
		SrcSegment: v.Src, DstSegment: v.Dst, FirstSeen: v.RunStart, LastSeen: last,
		Count: v.RunFlows, Bytes: v.RunBytes,
		Summary: fmt.Sprintf("%s → %s carried %s in %s from %s UTC, above the usual %s ± %s per minute (limit %s)",
			v.Src, v.Dst, fmtBytes(float64(v.RunBytes)), mins, ts, fmtBytes(v.Mean), fmtBytes(sd), fmtBytes(limit)),
		Evidence: evidence(map[string]any{"start": v.RunStart, "minutes": v.Run, "bytes": v.RunBytes, "flows": v.RunFlows,
			"last_minute_bytes": m.Bytes, "ewma_mean": math.Round(v.Mean), "ewma_stddev": math.Round(sd),
			"k": c.K, "samples": v.N}),
	})
}

// update folds one minute into the EWMA mean and variance.
func (v *volOwner) update(x, alpha float64) {
	if v.N == 0 {
		v.Mean, v.Var, v.N = x, 0, 1
		return
	}
	d := x - v.Mean
	incr := alpha * d
	v.Mean += incr
	v.Var = (1 - alpha) * (v.Var + d*incr)
	v.N++
}

func fmtBytes(x float64) string {
	switch {
	case x >= 1e9:
		return fmt.Sprintf("%.1f GB", x/1e9)
	case x >= 1e6:
		return fmt.Sprintf("%.1f MB", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1f kB", x/1e3)
	}
	return fmt.Sprintf("%.0f B", x)
}

// Lateral chain: the owner side.

// identState is the hops of one identity. Exported fields for the snapshot.
type identState struct {
	Hops []hop
}

type hop struct {
	Src, Dst         string
	SrcAddr, DstAddr schemas.Addr
	Port             uint16
	Proto            uint8
	First, Last      uint64
}

func (e *Engine) observeHop(k *Keyed) {
	if !e.cfg.LateralChain.Enabled || k.SrcSegment == k.DstSegment {
		return
	}
	w := e.win[kLateral]
	st := e.idents[k.Key]
	if st == nil {
		if len(e.idents) >= maxOwnedKeys {
			e.stats.Dropped++
			return
		}
		st = &identState{}
		e.idents[k.Key] = st
	}
	h := hop{Src: k.SrcSegment, Dst: k.DstSegment, SrcAddr: k.SrcAddr, DstAddr: k.DstAddr,
		Port: k.DstPort, Proto: k.Proto, First: k.Time, Last: max(k.Time, k.Last)}
	for i := range st.Hops {
		o := &st.Hops[i]
		if o.Src == h.Src && o.Dst == h.Dst && h.First <= o.Last+w && o.First <= h.Last+w {
			// The same hop again (a refresh): chains were checked when it
			// first appeared.
			o.First, o.Last = min(o.First, h.First), max(o.Last, h.Last)
			return
		}
	}
	for i := range st.Hops {
		o := &st.Hops[i]
		switch {
		case o.Dst == h.Src && o.Src != h.Dst && o.First <= h.First && h.First <= o.Last+w:
			e.chain(k.Key, o, &h, h.First) // o then h
		case h.Dst == o.Src && h.Src != o.Dst && h.First <= o.First && o.First <= h.Last+w:
			e.chain(k.Key, &h, o, o.First) // h then o (h arrived late)
		}
	}
	for i := range st.Hops {
		if o := &st.Hops[i]; o.Src == h.Src && o.Dst == h.Dst {
			*o = h // an expired episode of the same hop
			return
		}
	}
	if len(st.Hops) >= maxHopsPerIdent {
		oldest := 0
		for i := range st.Hops {
			if st.Hops[i].Last < st.Hops[oldest].Last {
				oldest = i
			}
		}
		st.Hops[oldest] = h
		return
	}
	st.Hops = append(st.Hops, h)
}

// chain alerts identity moving a.Src → a.Dst (= b.Src) → b.Dst at t.
func (e *Engine) chain(ident string, a, b *hop, t uint64) {
	dst := e.seg(b.Dst)
	if !dst.in(kLateral) {
		return
	}
	key := ident + "|" + a.Src + "|" + a.Dst + "|" + b.Dst
	if sup, _ := e.suppressed(kLateral, key, t); sup {
		return
	}
	e.markAlert(kLateral, key, t)
	w := e.win[kLateral]
	e.emit(&schemas.Alert{
		ID: alertID(kLateral, key, t-t%w), Time: t, Kind: kindNames[kLateral],
		Severity: dst.severity(kLateral, baseSeverity[kLateral]),
		SrcAddr:  b.SrcAddr, DstAddr: b.DstAddr, SrcSegment: b.Src, DstSegment: b.Dst, SrcIdentity: ident,
		DstPort: b.Port, Proto: b.Proto, FirstSeen: a.First, LastSeen: t, Count: 2,
		Summary: fmt.Sprintf("%s moved %s → %s → %s within %s (%s → %s on %s, then %s → %s on %s)",
			ident, a.Src, a.Dst, b.Dst, fmtDur(time.Duration(w)), a.SrcAddr, a.DstAddr, portProto(a.Port, a.Proto),
			b.SrcAddr, b.DstAddr, portProto(b.Port, b.Proto)),
		Evidence: evidence(map[string]any{"identity": ident, "segments": []string{a.Src, a.Dst, b.Dst},
			"hops": []map[string]any{
				{"src": a.SrcAddr.String(), "dst": a.DstAddr.String(), "port": portProto(a.Port, a.Proto), "first_seen": a.First, "last_seen": a.Last},
				{"src": b.SrcAddr.String(), "dst": b.DstAddr.String(), "port": portProto(b.Port, b.Proto), "first_seen": b.First, "last_seen": b.Last},
			}, "window": fmtDur(time.Duration(w))}),
	})
}

// Auth per user: the owner side.

// userAuth is the failure and success windows of one user.
type userAuth struct {
	Fail, Succ *agg
}

func (e *Engine) observeUserAuth(k *Keyed) {
	if !e.cfg.AuthBruteforce.Enabled || k.Key == "" {
		return
	}
	u := e.users[k.Key]
	if u == nil {
		if k.Outcome != schemas.OutcomeFailure {
			return
		}
		if len(e.users) >= maxOwnedKeys {
			e.stats.Dropped++
			return
		}
		u = &userAuth{Fail: &agg{Kind: kAuth, ByUser: true, Identity: k.Key, Win: k.Time - k.Time%e.win[kAuth]},
			Succ: &agg{Kind: kAuth, ByUser: true, Success: true, Identity: k.Key}}
		e.users[k.Key] = u
	}
	ev := authEvent{t: k.Time, src: k.SrcAddr, dst: k.DstAddr, port: k.DstPort, user: k.Key,
		srcSeg: k.SrcSegment, dstSeg: k.DstSegment}
	switch k.Outcome {
	case schemas.OutcomeFailure:
		e.authFailure(u.Fail, &ev, 2)
	case schemas.OutcomeSuccess:
		e.authSuccess(u.Fail, u.Succ, &ev, 2)
	}
}

// sweep drops idle state.
func (e *Engine) sweep(now uint64) {
	var maxWin uint64
	for _, k := range []uint8{kPolicy, kAddrScan, kPortScan, kAuth, kUnattr} {
		maxWin = max(maxWin, e.win[k])
	}
	idle := maxWin + e.lateness
	for i := range e.srcs {
		s := &e.srcs[i]
		if !s.Used {
			continue
		}
		keep := s.Aggs[:0]
		for _, a := range s.Aggs {
			if a.pending() || a.Win+e.win[a.Kind]+e.lateness > now {
				keep = append(keep, a)
			}
		}
		clear(s.Aggs[len(keep):])
		s.Aggs = keep
		if len(keep) == 0 && s.Last+idle < now {
			e.release(s)
			e.free = append(e.free, int32(i))
		}
	}
	for k, t := range e.supp {
		if t+e.suppress < now {
			delete(e.supp, k)
		}
	}
	base := uint64(e.cfg.NewEdge.Baseline)
	for k, t := range e.edges {
		if t+base < now {
			delete(e.edges, k)
		}
	}
	for _, p := range e.pairList {
		for k, t := range p.edges {
			if t+edgeRefresh < now {
				delete(p.edges, k)
			}
		}
		for k, t := range p.idents {
			if t+e.win[kLateral] < now {
				delete(p.idents, k)
			}
		}
	}
	lw := e.win[kLateral]
	for id, st := range e.idents {
		keep := st.Hops[:0]
		for _, h := range st.Hops {
			if h.Last+lw+e.lateness >= now {
				keep = append(keep, h)
			}
		}
		st.Hops = keep
		if len(keep) == 0 {
			delete(e.idents, id)
		}
	}
	for u, st := range e.users {
		if !st.Fail.pending() && !st.Succ.pending() && st.Fail.Last+e.win[kAuth]+e.lateness < now {
			delete(e.users, u)
		}
	}
	keep := e.volList[:0]
	for _, v := range e.volList {
		if len(v.Open) == 0 && v.LastClosed+uint64(24*time.Hour) < now {
			delete(e.vols, pairKey{v.Src, v.Dst}) // a day without traffic: its statistics are stale
			continue
		}
		keep = append(keep, v)
	}
	clear(e.volList[len(keep):])
	e.volList = keep
}
