package simulate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// Scenario defaults (ScenarioConfig's zero values).
const (
	DefaultScenarioDuration   = 20 * time.Minute
	DefaultScenarioTimeScale  = 60.0
	DefaultScenarioNormalRate = 200
	DefaultScenarioLearning   = 10 * time.Minute
)

// ScenarioEvent is one thing the scenario sends: a datagram's worth of
// flows, access-log lines, or both (a brute-force attempt is a line and
// its ssh flow).
type ScenarioEvent struct {
	// At is the event-time offset from Scenario.Start; RunScenario sends
	// the event At/scale of wall time after it starts.
	At time.Duration
	// Flows are one IPFIX datagram (at most 30 flows). Their TimeStart and
	// TimeEnd are event times (Scenario.Start + At, minus the flow's
	// duration), set when the scenario is built, never at send time.
	Flows []schemas.Flow
	// AccessLines are sent as RFC 5424 syslog sshd messages stamped with
	// their Time (the event time, millisecond precision).
	AccessLines []AccessLine
	// Host is the syslog HOSTNAME of AccessLines ("web-1", "app-1").
	Host string
	// Label is "" for normal traffic, else the alert kind the event is an
	// instance of (schemas.Alert* constants).
	Label string
}

// Scenario is a labelled, deterministic replay: normal traffic with one
// instance of each attack, for detector precision/recall tests and the
// demo. Build it with NewScenario.
type Scenario struct {
	// Events are sorted by At.
	Events []ScenarioEvent
	// Expected maps each alert kind to the number of distinct alerts the
	// detectors should raise for the whole scenario, co-alerts included
	// (see NewScenario): every kind 1 but new_edge 2.
	Expected map[string]int
	// Duration is the scenario's length in event time.
	Duration time.Duration
	// Start is the event-time base, truncated to the minute so scenario
	// minutes are the detectors' one-minute buckets.
	Start time.Time
	// TimeScale is the configured pacing, event seconds per wall second.
	TimeScale float64
}

// ScenarioConfig configures NewScenario. The zero value works.
type ScenarioConfig struct {
	// Seed drives the normal traffic and the attacks' ephemeral ports.
	Seed int64
	// Start is the event-time base; it is truncated to the minute. Zero
	// means Duration before now (so the scenario's event times end about
	// when a paced replay finishes): only a fixed Start gives identical
	// events for one seed.
	Start time.Time
	// Duration is the scenario's length in event time (default 20m). It is
	// raised when needed to fit every attack plus one trailing minute that
	// closes the last one-minute window.
	Duration time.Duration
	// TimeScale is event seconds per wall second for RunScenario (default
	// 60: a 20-minute scenario is sent in 20 s).
	TimeScale float64
	// NormalRate is normal flows per event second (default 200). Below
	// about 100 flows/s some segment pairs carry so few bytes that an
	// attack's few flows may move their per-minute volume noticeably.
	NormalRate int
	// Learning is the attack-free lead-in during which baselines (new_edge,
	// volume EWMA) warm up (default 10m).
	Learning time.Duration
}

// ScenarioTotals is what RunScenario sent: flows and access lines, and
// records (flows plus lines) per label, "" being normal traffic.
type ScenarioTotals struct {
	Flows, Lines uint64
	ByLabel      map[string]uint64
}

func (t ScenarioTotals) String() string {
	labels := make([]string, 0, len(t.ByLabel))
	for l := range t.ByLabel {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		name := l
		if name == "" {
			name = "normal"
		}
		parts = append(parts, fmt.Sprintf("%s=%d", name, t.ByLabel[l]))
	}
	return fmt.Sprintf("%d flows, %d lines (%s)", t.Flows, t.Lines, strings.Join(parts, " "))
}

// Addresses of the scenario's actors. Hosts outside the generator's pools
// (10.1.2.x, 10.3.2.x, 10.2.1.x) are only ever used by the scenario, so
// their alerts are told apart from normal traffic.
var (
	scWeb1      = v4(10, 1, 0, 10) // "web-1", a normal pool web host
	scDB1       = v4(10, 2, 0, 10) // a normal pool db host
	scDB2       = v4(10, 2, 0, 12)
	scApp1      = v4(10, 3, 0, 10) // a normal pool app host
	scWebSearch = v4(10, 1, 0, 11) // normal pool web host, target of new_edge

	scHealthCheck = v4(10, 3, 2, 9)       // normal: probes 30 ports across the app pool
	scGatewayCli  = v4(10, 3, 0, 20)      // normal: steady calls to the payment gateway
	scGateway     = v4(203, 0, 113, 250)  // external payment gateway
	scViolator    = v4(10, 1, 2, 40)      // policy_violation source
	scAddrScanner = v4(10, 3, 2, 66)      // address_scan source
	scPortScanner = v4(10, 3, 2, 77)      // port_scan source
	scExfil       = v4(10, 3, 2, 99)      // volume_spike source
	scBruteSrc    = v4(203, 0, 113, 66)   // auth_bruteforce source
	scUnattrib    = v4(192, 0, 2, 66)     // unattributed_access source
	scLateralWeb  = v4(10, 1, 2, 50)      // mallory's web host
	scLateralApp  = v4(10, 3, 2, 50)      // mallory's app host
	scNewEdgeSrc  = v4(10, 3, 2, 60)      // new_edge source
	scBruteUser   = "backup"              // auth_bruteforce target account
	scLateralUser = "mallory"             // lateral_chain identity
	scPoolSize    = 6                     // normal destinations per tier and family
	scLowFactor   = 0.9                   // normal bytes in odd minutes
	scHealthPorts = [2]uint16{8000, 8029} // the health checker's (and port scan's) ports
)

func v4(a, b, c, d byte) schemas.Addr { return schemas.AddrFrom4([4]byte{a, b, c, d}) }

// Attack parameters. Detector defaults they are measured against:
// address_scan ≥25 hosts/5m, port_scan ≥15 ports/5m, auth_bruteforce ≥10
// failures/5m, volume_spike mean+3σ after 10 one-minute samples,
// lateral_chain 60m, policy_violation per (source, dst segment, port,
// proto) per 1m.
const (
	scViolationFlows  = 5  // web→db 22/tcp within 20 s
	scAddrScanHosts   = 40 // db hosts on 5432/tcp, one per second
	scPortScanPorts   = 30 // ports 8000-8029 of one app host, one per second
	scBruteFailures   = 15 // failed passwords, 2 s apart, then one success
	scUnattribFlows   = 5  // external→db 22/tcp, no identity
	scVolumeFactor    = 20 // the spike minute's bytes over a normal minute's
	scVolumeFlows     = 12 // flows carrying the spike's extra bytes
	scGatewayFlows    = 6  // normal app→gateway flows per minute
	scGatewayBytes    = 100_000
	scNewEdgeFlows    = 2 // app→web 9200/tcp, one packet each
	scLateralHopFlows = 3 // flows per hop of the chain
)

// NewScenario builds a deterministic scenario: normal traffic for Duration
// interleaved with exactly one instance of each attack. The same config
// (with a fixed Start) gives identical events.
//
// # Normal traffic (label "")
//
// One minute of Generator flows (NormalRate per second, seeded by Seed) is
// drawn once, shaped, and replayed every minute, so every edge normal
// traffic ever uses is seen in the first minute, and every segment pair
// carries the same bytes each minute: exactly the template's in even
// minutes and 0.9× (bytes per packet kept ≥ 40/60) in odd minutes. That
// bounded swing gives volume_spike a real σ (about 5% of the mean, so its
// mean+3σ sits near 1.09× a normal minute) that normal minutes never
// reach, whereas the generator's Pareto byte counts would spike on their
// own. Each flow lies inside its minute (TimeStart clamped), so whichever
// time field a detector buckets by it sees the same sums. Shaping:
//   - every internal destination (web, app, db; IPv4 and IPv6) is folded
//     into a pool of 6 hosts per tier, so no source reaches more than 18
//     hosts on one port in all other segments together (address_scan
//     needs 25); the generator alone sends a busy web host to hundreds of
//     app hosts on 8080 and a busy client to dozens of web hosts;
//   - ssh sources are the admin VPN (198.51.100.240/29, 2001:db8:2:ff::/64,
//     service account admin-vpn in deploy/scenario-policy.yaml), so ssh
//     into db is attributed; every tier has a service account there too,
//     so no normal flow into db lacks an identity;
//   - a health checker 10.3.2.9 probes ports 8000-8029 across the app pool
//     every minute (port i on pool host i mod 6: 5 ports per host, far
//     below port_scan's 15), which puts (app, app, 8000-8029/tcp) in the
//     new_edge baseline;
//   - 10.3.0.20 calls the payment gateway 203.0.113.250:443 with 6 flows
//     of 100 kB a minute: the steady app→external pair of volume_spike.
//
// No normal source touches more than 5 ports of one host, no normal flow is
// a violation under deploy/scenario-policy.yaml, and no access lines are
// normal, so auth_bruteforce and lateral_chain see only the attacks.
//
// # Attacks (label = alert kind)
//
// Every attack starts after Learning, in odd (0.9×) minutes, so its few
// flows never lift a pair's minute to mean+3σ; attack flows lie inside one
// minute. With the defaults, a = 11 (the first odd minute at or after
// Learning):
//   - policy_violation (minute a): 10.1.2.40 (web) → 10.2.0.12 (db)
//     22/tcp, 5 flows over 20 s: one (source, db, 22, tcp) window. Co-alert:
//     new_edge for (web, db, 22, tcp), an edge normal traffic never uses (a
//     violation always is one).
//   - address_scan (minute a): 10.3.2.66 (app) → 40 db hosts 10.2.1.1-40 on
//     5432/tcp, one SYN a second (40 s). app→db 5432 is allowed and in the
//     baseline, and the source has svc-app, so nothing else fires.
//   - lateral_chain (minutes a and a+4): sshd (host web-1) accepts mallory
//     from 10.1.2.50 (binding that web host to mallory), 3 flows
//     10.1.2.50 → 10.3.2.50:8080; then sshd (host app-1) accepts mallory
//     from 10.3.2.50, 3 flows 10.3.2.50 → 10.2.0.10:5432: web→app→db in 4
//     minutes, both hops allowed baseline edges.
//   - port_scan (minute a+2): 10.3.2.77 → 10.3.0.10 (both app) on ports
//     8000-8029/tcp, one SYN a second: intra-segment (no verdict to
//     violate), edges in the baseline thanks to the health checker.
//   - auth_bruteforce (minute a+2): 15 "Failed password for backup from
//     203.0.113.66" sshd lines (host web-1) 2 s apart, then an accepted
//     password, each with its ssh flow 203.0.113.66 → 10.1.0.10:22
//     (allowed, baseline). One source and one user: one alert.
//   - unattributed_access (minute a+4): 192.0.2.66, outside the admin VPN
//     and without a login, → 10.2.0.12:22, 5 flows (allowed external→db
//     ssh, a baseline edge, but no identity).
//   - new_edge (minute a+4): 10.3.2.60 (app) → 10.1.0.11:9200/tcp, 2
//     one-packet flows, allowed by rule app-to-web-search, never in the
//     baseline.
//   - volume_spike (minute max(a+6, 11)): 10.3.2.99 → 203.0.113.250:443, 12
//     flows adding enough bytes that app→external carries 20× a normal
//     minute, after at least 10 steady minutes.
//
// Expected: one alert per kind, 2 new_edge (the attack and the
// policy_violation's edge) and 2 auth_bruteforce (the failures, and the
// success after them, which the detector reports on its own).
func NewScenario(cfg ScenarioConfig) *Scenario {
	if cfg.Duration <= 0 {
		cfg.Duration = DefaultScenarioDuration
	}
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = DefaultScenarioTimeScale
	}
	if cfg.NormalRate <= 0 {
		cfg.NormalRate = DefaultScenarioNormalRate
	}
	if cfg.Learning <= 0 {
		cfg.Learning = DefaultScenarioLearning
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now().Add(-cfg.Duration)
	}
	start := cfg.Start.Truncate(time.Minute)

	sched := newAttackSchedule(cfg.Learning)
	if need := time.Duration(sched.last+2) * time.Minute; cfg.Duration < need {
		cfg.Duration = need
	}

	b := &scenarioBuilder{
		start: start,
		rng:   rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5ce7a210)),
	}
	b.normal(cfg.Seed, cfg.NormalRate, cfg.Duration)
	b.attacks(sched)
	sort.SliceStable(b.events, func(i, j int) bool { return b.events[i].At < b.events[j].At })

	return &Scenario{
		Events: b.events,
		Expected: map[string]int{
			schemas.AlertPolicyViolation:    1,
			schemas.AlertNewEdge:            2, // the new_edge attack + the violation's edge
			schemas.AlertAddressScan:        1,
			schemas.AlertPortScan:           1,
			schemas.AlertVolumeSpike:        1,
			schemas.AlertAuthBruteforce:     2, // failures from one source, then the success after them
			schemas.AlertUnattributedAccess: 1,
			schemas.AlertLateralChain:       1,
		},
		Duration:  cfg.Duration,
		Start:     start,
		TimeScale: cfg.TimeScale,
	}
}

// attackSchedule holds the scenario minutes of the attacks.
type attackSchedule struct {
	first, second, third, spike, last int
}

func newAttackSchedule(learning time.Duration) attackSchedule {
	a := int((learning + time.Minute - 1) / time.Minute)
	if a%2 == 0 {
		a++ // odd minutes are the 0.9× ones
	}
	s := attackSchedule{first: a, second: a + 2, third: a + 4, spike: max(a+6, 11)}
	s.last = s.spike
	return s
}

type scenarioBuilder struct {
	start  time.Time
	rng    *rand.Rand
	events []ScenarioEvent
}

// templateFlow is one flow of the normal minute.
type templateFlow struct {
	f   schemas.Flow
	at  time.Duration // offset in the minute: when it is sent
	end time.Duration // TimeEnd offset in the minute (≤ at)
	dur time.Duration // TimeEnd - TimeStart before clamping
}

// normal adds the replayed normal minutes.
func (b *scenarioBuilder) normal(seed int64, rate int, duration time.Duration) {
	tmpl := normalTemplate(seed, rate)
	const perDatagram = 30
	var batch []schemas.Flow
	var batchAt time.Duration
	flush := func() {
		if len(batch) > 0 {
			b.events = append(b.events, ScenarioEvent{At: batchAt, Flows: batch})
			batch = nil
		}
	}
	for k := 0; time.Duration(k)*time.Minute < duration; k++ {
		m := time.Duration(k) * time.Minute
		low := k%2 == 1
		for i := range tmpl {
			t := &tmpl[i]
			if m+t.at >= duration {
				break
			}
			f := t.f
			end := m + max(t.end, 0)
			startOff := max(end-t.dur, m)
			f.TimeEnd = b.eventNs(end)
			f.TimeStart = b.eventNs(startOff)
			if low {
				minPkt := uint64(40)
				if f.EtherType == 0x86dd {
					minPkt = 60
				}
				f.Bytes = max(uint64(float64(f.Bytes)*scLowFactor), f.Packets*minPkt)
			}
			batch = append(batch, f)
			batchAt = m + t.at
			if len(batch) == perDatagram {
				flush()
			}
		}
		flush() // datagrams never span minutes
	}
}

func (b *scenarioBuilder) eventNs(off time.Duration) uint64 {
	return uint64(b.start.Add(off).UnixNano())
}

// normalTemplate draws and shapes one minute of normal flows (see
// NewScenario), sorted by send offset.
func normalTemplate(seed int64, rate int) []templateFlow {
	ref := time.Unix(1_000_000_000, 0)
	gen := NewGenerator(seed, WithClock(func() time.Time { return ref }))
	n := rate * 60
	tmpl := make([]templateFlow, 0, n+scPortScanPorts+scGatewayFlows)
	refNs := uint64(ref.UnixNano())
	for i := 0; i < n; i++ {
		var f schemas.Flow
		gen.Next(&f)
		at := time.Duration(i) * time.Second / time.Duration(rate)
		back := time.Duration(refNs - f.TimeEnd)
		dur := time.Duration(f.TimeEnd - f.TimeStart)
		f.DstAddr = foldInternal(f.DstAddr)
		if f.Proto == 6 && f.DstPort == 22 {
			f.SrcAddr = adminVPN(f.SrcAddr)
		}
		tmpl = append(tmpl, templateFlow{f: f, at: at, end: at - back, dur: dur})
	}
	// Health checks: port 8000+i on app pool host i mod 6, every 2 s.
	for i := 0; i <= int(scHealthPorts[1]-scHealthPorts[0]); i++ {
		at := time.Duration(i)*2*time.Second + 500*time.Millisecond
		f := tcpFlow(scHealthCheck, v4(10, 3, 0, byte(10+i%scPoolSize)), uint16(40000+i), scHealthPorts[0]+uint16(i), 3, 180, 0x1b)
		tmpl = append(tmpl, templateFlow{f: f, at: at, end: at, dur: 10 * time.Millisecond})
	}
	// Payment gateway calls: steady app→external bytes.
	for i := 0; i < scGatewayFlows; i++ {
		at := time.Duration(5+10*i) * time.Second
		f := tcpFlow(scGatewayCli, scGateway, uint16(41000+i), 443, scGatewayBytes/1000, scGatewayBytes, 0x1b)
		tmpl = append(tmpl, templateFlow{f: f, at: at, end: at, dur: 2 * time.Second})
	}
	sort.SliceStable(tmpl, func(i, j int) bool { return tmpl[i].at < tmpl[j].at })
	return tmpl
}

// foldInternal maps a generator destination in web, app or db (not dns)
// to one of scPoolSize hosts of its tier, keeping the generator's skew.
func foldInternal(a schemas.Addr) schemas.Addr {
	if a.Is4() {
		if a[12] == 10 && a[13] >= 1 && a[13] <= 3 && !(a[13] == 3 && a[14] == 53) {
			h := int(a[14])*250 + int(a[15]) - 10
			return v4(10, a[13], 0, byte(10+max(h, 0)%scPoolSize))
		}
		return a
	}
	ip := a.Netip()
	b := ip.As16()
	if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8 && b[4] == 0 && b[5] == 1 && b[6] == 0 && b[7] >= 1 && b[7] <= 3 {
		h := int(b[14])<<8 | int(b[15])
		return schemas.AddrFromNetip(addr6(1, uint16(b[7]), uint16(1+max(h-1, 0)%scPoolSize)))
	}
	return a
}

// adminVPN maps an ssh client to the admin VPN ranges.
func adminVPN(a schemas.Addr) schemas.Addr {
	if a.Is4() {
		return v4(198, 51, 100, 240+a[15]%8)
	}
	return schemas.AddrFromNetip(addr6(2, 0xff, uint16(1+a[15]%8)))
}

// tcpFlow is an IPv4 TCP flow with times left to the caller.
func tcpFlow(src, dst schemas.Addr, sport, dport uint16, packets, bytes uint64, flags uint8) schemas.Flow {
	return schemas.Flow{
		SrcAddr: src, DstAddr: dst, SrcPort: sport, DstPort: dport,
		Proto: 6, TCPFlags: flags, Packets: packets, Bytes: bytes,
		EtherType: 0x0800, InIf: 10, OutIf: 20,
		NextHop: v4(10, 255, 0, 20),
	}
}

// flowEvent returns an event sending flows at offset at, each with TimeEnd = at and
// TimeStart dur earlier.
func (b *scenarioBuilder) flowEvent(label string, at, dur time.Duration, flows ...schemas.Flow) ScenarioEvent {
	for i := range flows {
		flows[i].TimeEnd = b.eventNs(at)
		flows[i].TimeStart = b.eventNs(at - dur)
	}
	return ScenarioEvent{At: at, Flows: flows, Label: label}
}

func (b *scenarioBuilder) ephemeral() uint16 { return uint16(32768 + b.rng.IntN(61000-32768)) }

func (b *scenarioBuilder) add(e ScenarioEvent) { b.events = append(b.events, e) }

func (b *scenarioBuilder) sshAccept(label, host, user, method string, src schemas.Addr, at time.Duration) ScenarioEvent {
	srcText := src.Netip().Unmap().String()
	line := AccessLine{
		Line: fmt.Sprintf("Accepted %s for %s from %s port %d ssh2", method, user, srcText, b.ephemeral()),
		User: user, SrcAddr: srcText, Action: "login", Outcome: "success",
		Time: b.start.Add(at).UTC(),
	}
	return ScenarioEvent{At: at, AccessLines: []AccessLine{line}, Host: host, Label: label}
}

// attacks adds one instance of each attack (see NewScenario).
func (b *scenarioBuilder) attacks(s attackSchedule) {
	minute := func(k int, sec float64) time.Duration {
		return time.Duration(k)*time.Minute + time.Duration(sec*float64(time.Second))
	}

	// policy_violation: web → db on ssh, not allowed.
	for i := 0; i < scViolationFlows; i++ {
		f := tcpFlow(scViolator, scDB2, b.ephemeral(), 22, 12, 2400, 0x1b)
		b.add(b.flowEvent(schemas.AlertPolicyViolation, minute(s.first, 5+5*float64(i)), 300*time.Millisecond, f))
	}

	// address_scan: one app host SYNs 40 db hosts on 5432.
	for i := 0; i < scAddrScanHosts; i++ {
		f := tcpFlow(scAddrScanner, v4(10, 2, 1, byte(1+i)), b.ephemeral(), 5432, 1, 44, 0x02)
		b.add(b.flowEvent(schemas.AlertAddressScan, minute(s.first, 12+float64(i)), 0, f))
	}

	// lateral_chain, hop 1: mallory on a web host, then web → app.
	b.add(b.sshAccept(schemas.AlertLateralChain, "web-1", scLateralUser, "publickey", scLateralWeb, minute(s.first, 3)))
	for i := 0; i < scLateralHopFlows; i++ {
		f := tcpFlow(scLateralWeb, scLateralApp, b.ephemeral(), 8080, 20, 8000, 0x1b)
		b.add(b.flowEvent(schemas.AlertLateralChain, minute(s.first, 30+float64(i)), 500*time.Millisecond, f))
	}

	// port_scan: one app host SYNs 30 ports of another, intra-segment.
	for i := 0; i < scPortScanPorts; i++ {
		f := tcpFlow(scPortScanner, scApp1, b.ephemeral(), scHealthPorts[0]+uint16(i), 1, 44, 0x02)
		b.add(b.flowEvent(schemas.AlertPortScan, minute(s.second, 5+float64(i)), 0, f))
	}

	// auth_bruteforce: 15 failures then a success, each with its flow.
	for i := 0; i <= scBruteFailures; i++ {
		at := minute(s.second, 10+2*float64(i))
		port := b.ephemeral()
		src := scBruteSrc.Netip().Unmap().String()
		line := AccessLine{
			Line: fmt.Sprintf("Failed password for %s from %s port %d ssh2", scBruteUser, src, port),
			User: scBruteUser, SrcAddr: src, Action: "login", Outcome: "failure",
			Time: b.start.Add(at).UTC(),
		}
		if i == scBruteFailures {
			line.Line = fmt.Sprintf("Accepted password for %s from %s port %d ssh2", scBruteUser, src, port)
			line.Outcome = "success"
		}
		f := tcpFlow(scBruteSrc, scWeb1, port, 22, 14, 3200, 0x1b)
		e := b.flowEvent(schemas.AlertAuthBruteforce, at, 800*time.Millisecond, f)
		e.AccessLines, e.Host = []AccessLine{line}, "web-1"
		b.add(e)
	}

	// unattributed_access: an external address with no identity into db.
	for i := 0; i < scUnattribFlows; i++ {
		f := tcpFlow(scUnattrib, scDB2, b.ephemeral(), 22, 10, 2000, 0x1b)
		b.add(b.flowEvent(schemas.AlertUnattributedAccess, minute(s.third, 10+4*float64(i)), 300*time.Millisecond, f))
	}

	// lateral_chain, hop 2: mallory on the app host, then app → db.
	b.add(b.sshAccept(schemas.AlertLateralChain, "app-1", scLateralUser, "publickey", scLateralApp, minute(s.third, 3)))
	for i := 0; i < scLateralHopFlows; i++ {
		f := tcpFlow(scLateralApp, scDB1, b.ephemeral(), 5432, 20, 8000, 0x1b)
		b.add(b.flowEvent(schemas.AlertLateralChain, minute(s.third, 30+float64(i)), 500*time.Millisecond, f))
	}

	// new_edge: app → web 9200, allowed but never seen.
	for i := 0; i < scNewEdgeFlows; i++ {
		f := tcpFlow(scNewEdgeSrc, scWebSearch, b.ephemeral(), 9200, 1, 52, 0x18)
		b.add(b.flowEvent(schemas.AlertNewEdge, minute(s.third, 40+float64(i)), 0, f))
	}

	// volume_spike: app → external carries 20× a normal minute.
	normal := float64(scGatewayFlows * scGatewayBytes)
	this := normal
	if s.spike%2 == 1 {
		this = float64(uint64(float64(scGatewayBytes)*scLowFactor) * scGatewayFlows)
	}
	extra := uint64(scVolumeFactor*normal - this)
	per := extra / scVolumeFlows
	for i := 0; i < scVolumeFlows; i++ {
		bytes := per
		if i == scVolumeFlows-1 {
			bytes = extra - per*(scVolumeFlows-1)
		}
		f := tcpFlow(scExfil, scGateway, b.ephemeral(), 443, bytes/1400+1, bytes, 0x18)
		b.add(b.flowEvent(schemas.AlertVolumeSpike, minute(s.spike, 5+4*float64(i)), 3*time.Second, f))
	}
}

// RunScenario sends s: flows as IPFIX datagrams (one per event) to
// flowTarget over UDP, access lines as RFC 5424 syslog sshd messages over
// UDP to syslogTarget (host:port or udp://host:port), each stamped with
// its event time at millisecond precision and the event's Host. Event At
// is sent At/scale after the start (scale ≤ 0: s.TimeScale;
// math.Inf(1): as fast as possible); a late event is caught up without
// sleeping. It returns what was sent; when ctx is done it stops between
// events and returns the totals with ctx's error.
func RunScenario(ctx context.Context, s *Scenario, flowTarget, syslogTarget string, scale float64) (ScenarioTotals, error) {
	tot := ScenarioTotals{ByLabel: map[string]uint64{}}
	if s == nil {
		return tot, errors.New("simulate: nil scenario")
	}
	if scale <= 0 || math.IsNaN(scale) {
		scale = s.TimeScale
	}
	if scale <= 0 {
		scale = DefaultScenarioTimeScale
	}
	var needFlows, needLines bool
	for i := range s.Events {
		needFlows = needFlows || len(s.Events[i].Flows) > 0
		needLines = needLines || len(s.Events[i].AccessLines) > 0
	}
	var flowConn, sysConn *net.UDPConn
	var err error
	if needFlows {
		if flowConn, err = dialUDP(flowTarget); err != nil {
			return tot, fmt.Errorf("simulate: flow target: %w", err)
		}
		defer flowConn.Close()
		_ = flowConn.SetWriteBuffer(4 << 20)
	}
	if needLines {
		if sysConn, err = dialUDP(strings.TrimPrefix(syslogTarget, "udp://")); err != nil {
			return tot, fmt.Errorf("simulate: syslog target: %w", err)
		}
		defer sysConn.Close()
	}
	enc := NewEncoder(ProtocolIPFIX, EncoderOptions{TemplateEvery: DefaultTemplateEvery})

	var buf []byte
	start := time.Now()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for i := range s.Events {
		e := &s.Events[i]
		if err := ctx.Err(); err != nil {
			return tot, err
		}
		if !math.IsInf(scale, 1) {
			due := start.Add(time.Duration(float64(e.At) / scale))
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return tot, ctx.Err()
				case <-timer.C:
				}
			}
		}
		if len(e.Flows) > 0 {
			buf = enc.Encode(buf[:0], e.Flows)
			if err := write(flowConn, buf); err != nil {
				return tot, fmt.Errorf("simulate: sending flows to %s: %w", flowTarget, err)
			}
			tot.Flows += uint64(len(e.Flows))
			tot.ByLabel[e.Label] += uint64(len(e.Flows))
		}
		for _, l := range e.AccessLines {
			buf = appendSyslog5424(buf[:0], e.Host, l)
			if err := write(sysConn, buf); err != nil {
				return tot, fmt.Errorf("simulate: sending syslog to %s: %w", syslogTarget, err)
			}
			tot.Lines++
			tot.ByLabel[e.Label]++
		}
	}
	return tot, nil
}

func dialUDP(target string) (*net.UDPConn, error) {
	raddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", target, err)
	}
	return net.DialUDP("udp", nil, raddr)
}

// appendSyslog5424 appends one RFC 5424 message: facility auth, severity
// info, APP-NAME sshd, the line's time in UTC with milliseconds.
func appendSyslog5424(dst []byte, host string, l AccessLine) []byte {
	if host == "" {
		host = "web-1"
	}
	return fmt.Appendf(dst, "<%d>1 %s %s sshd %d - - %s", 4*8+6,
		l.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"), host, 2200+len(host), l.Line)
}
