package simulate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/enrich"
	"github.com/flowaudit/flowaudit/ingest/access/parser"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

const scenarioPolicyFile = "../../deploy/scenario-policy.yaml"

var scenarioStart = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

func loadScenarioPolicy(t *testing.T) *policy.Matcher {
	t.Helper()
	if _, err := policy.Validate(scenarioPolicyFile); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(scenarioPolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The raw generator's traffic, unshaped, is entirely allowed or
// intra-segment under the scenario policy.
func TestScenarioPolicyAllowsGeneratorTraffic(t *testing.T) {
	e := enrich.NewEnricher(loadScenarioPolicy(t), nil)
	gen := NewGenerator(7)
	var b schemas.FlowBatch
	var f schemas.Flow
	var r enrich.Result
	verdicts := map[policy.Verdict]int{}
	for i := 0; i < 50_000; i++ {
		gen.Next(&f)
		e.EnrichFlow(&b, &f, &r)
		verdicts[r.Verdict]++
		if r.Verdict != policy.VerdictAllowed && r.Verdict != policy.VerdictIntraSegment {
			t.Fatalf("flow %d %s:%d → %s:%d proto %d (%s → %s): verdict %s", i, f.SrcAddr, f.SrcPort, f.DstAddr, f.DstPort, f.Proto,
				r.SrcSegment, r.DstSegment, r.Verdict)
		}
	}
	if verdicts[policy.VerdictAllowed] == 0 || verdicts[policy.VerdictIntraSegment] == 0 {
		t.Errorf("verdicts %v: want both allowed and intra-segment flows", verdicts)
	}
}

func TestNewScenarioDeterministic(t *testing.T) {
	cfg := ScenarioConfig{Seed: 3, Start: scenarioStart, NormalRate: 10}
	a, b := NewScenario(cfg), NewScenario(cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same config gave different scenarios")
	}
	cfg.Seed = 4
	if c := NewScenario(cfg); reflect.DeepEqual(a.Events, c.Events) {
		t.Fatal("another seed gave the same events")
	}
}

func TestNewScenarioDefaults(t *testing.T) {
	s := NewScenario(ScenarioConfig{Start: scenarioStart.Add(30 * time.Second), NormalRate: 5})
	if s.Duration != DefaultScenarioDuration || s.TimeScale != DefaultScenarioTimeScale || !s.Start.Equal(scenarioStart) {
		t.Errorf("Duration %s TimeScale %g Start %s: want defaults and Start truncated to %s", s.Duration, s.TimeScale, s.Start, scenarioStart)
	}
	// Too short a Duration is raised to fit the attacks and a closing minute.
	s = NewScenario(ScenarioConfig{Start: scenarioStart, NormalRate: 5, Duration: time.Minute})
	if s.Duration != 19*time.Minute {
		t.Errorf("Duration %s, want 19m", s.Duration)
	}
	want := map[string]int{}
	for _, k := range schemas.AlertKinds {
		want[k] = 1
	}
	want[schemas.AlertNewEdge] = 2
	want[schemas.AlertAuthBruteforce] = 2
	if diff := cmp.Diff(s.Expected, want); diff != "" {
		t.Errorf("Expected (-got +want):\n%s", diff)
	}
}

func TestScenarioEventsOrdered(t *testing.T) {
	s := NewScenario(ScenarioConfig{Seed: 1, Start: scenarioStart, NormalRate: 20})
	for i, e := range s.Events {
		if i > 0 && e.At < s.Events[i-1].At {
			t.Fatalf("event %d at %s before event %d at %s", i, e.At, i-1, s.Events[i-1].At)
		}
		if e.At < 0 || e.At >= s.Duration {
			t.Fatalf("event %d at %s outside [0, %s)", i, e.At, s.Duration)
		}
		if len(e.Flows) > 30 {
			t.Fatalf("event %d has %d flows, more than a datagram", i, len(e.Flows))
		}
		for _, f := range e.Flows {
			// A flow ends no later than it is sent, and lies in one minute.
			end, start := time.Unix(0, int64(f.TimeEnd)), time.Unix(0, int64(f.TimeStart))
			if end.After(s.Start.Add(e.At)) || start.After(end) || !start.Truncate(time.Minute).Equal(end.Truncate(time.Minute)) {
				t.Fatalf("event %d at %s: flow %s-%s", i, e.At, start, end)
			}
		}
	}
}

// attackFlows collects the flows and lines of one label.
func attackFlows(s *Scenario, label string) (flows []schemas.Flow, lines []AccessLine, hosts []string) {
	for _, e := range s.Events {
		if e.Label == label {
			flows = append(flows, e.Flows...)
			lines = append(lines, e.AccessLines...)
			if len(e.AccessLines) > 0 {
				hosts = append(hosts, e.Host)
			}
		}
	}
	return
}

func flowSpan(flows []schemas.Flow) time.Duration {
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for _, f := range flows {
		lo, hi = min(lo, f.TimeStart), max(hi, f.TimeEnd)
	}
	return time.Duration(hi - lo)
}

func TestScenarioAttackParameters(t *testing.T) {
	cfg := ScenarioConfig{Seed: 2, Start: scenarioStart, NormalRate: 20}
	s := NewScenario(cfg)
	learningEnd := uint64(scenarioStart.Add(DefaultScenarioLearning).UnixNano())
	labels := map[string]bool{}
	for _, e := range s.Events {
		if e.Label == "" {
			continue
		}
		labels[e.Label] = true
		if e.At < DefaultScenarioLearning {
			t.Errorf("%s event at %s, inside the learning period", e.Label, e.At)
		}
		for _, f := range e.Flows {
			if f.TimeStart < learningEnd {
				t.Errorf("%s flow starts before the learning period ends", e.Label)
			}
		}
	}
	for _, k := range schemas.AlertKinds {
		if !labels[k] {
			t.Errorf("no %s attack", k)
		}
	}
	distinct := func(flows []schemas.Flow, key func(f *schemas.Flow) string) int {
		set := map[string]bool{}
		for i := range flows {
			set[key(&flows[i])] = true
		}
		return len(set)
	}
	src := func(f *schemas.Flow) string { return f.SrcAddr.String() }
	dst := func(f *schemas.Flow) string { return f.DstAddr.String() }
	port := func(f *schemas.Flow) string { return fmt.Sprint(f.DstPort, "/", f.Proto) }

	t.Run("address_scan", func(t *testing.T) {
		flows, _, _ := attackFlows(s, schemas.AlertAddressScan)
		if n := distinct(flows, dst); n != 40 || distinct(flows, src) != 1 || distinct(flows, port) != 1 || flowSpan(flows) > time.Minute {
			t.Errorf("%d hosts from %d sources on %d ports in %s: want 40 from 1 on 1 within 1m", n, distinct(flows, src), distinct(flows, port), flowSpan(flows))
		}
	})
	t.Run("port_scan", func(t *testing.T) {
		flows, _, _ := attackFlows(s, schemas.AlertPortScan)
		if n := distinct(flows, port); n != 30 || distinct(flows, dst) != 1 || distinct(flows, src) != 1 || flowSpan(flows) > time.Minute {
			t.Errorf("%d ports of %d hosts in %s: want 30 of 1 within 1m", n, distinct(flows, dst), flowSpan(flows))
		}
	})
	t.Run("auth_bruteforce", func(t *testing.T) {
		_, lines, hosts := attackFlows(s, schemas.AlertAuthBruteforce)
		var fails, okAfter int
		users, srcs := map[string]bool{}, map[string]bool{}
		for _, l := range lines {
			users[l.User], srcs[l.SrcAddr] = true, true
			switch l.Outcome {
			case "failure":
				fails++
			case "success":
				if fails >= 15 {
					okAfter++
				}
			}
		}
		span := lines[len(lines)-1].Time.Sub(lines[0].Time)
		if fails != 15 || okAfter != 1 || len(users) != 1 || len(srcs) != 1 || span > time.Minute || hosts[0] != "web-1" {
			t.Errorf("%d failures, %d successes after them, users %v, sources %v, span %s, host %s", fails, okAfter, users, srcs, span, hosts[0])
		}
	})
	t.Run("volume_spike", func(t *testing.T) {
		flows, _, _ := attackFlows(s, schemas.AlertVolumeSpike)
		var bytes uint64
		for _, f := range flows {
			bytes += f.Bytes
		}
		// With the minute's normal gateway bytes the pair carries 20×.
		normal := uint64(scGatewayFlows * scGatewayBytes)
		this := uint64(float64(scGatewayBytes)*scLowFactor) * scGatewayFlows
		if got := bytes + this; got != 20*normal || flowSpan(flows) > time.Minute {
			t.Errorf("spike minute carries %d bytes in %s, want %d", got, flowSpan(flows), 20*normal)
		}
	})
	t.Run("lateral_chain", func(t *testing.T) {
		flows, lines, hosts := attackFlows(s, schemas.AlertLateralChain)
		if len(lines) != 2 || lines[0].User != "mallory" || lines[1].User != "mallory" || !reflect.DeepEqual(hosts, []string{"web-1", "app-1"}) {
			t.Fatalf("lines %+v hosts %v", lines, hosts)
		}
		if flowSpan(flows) > time.Hour {
			t.Errorf("chain spans %s, want within 60m", flowSpan(flows))
		}
	})
	t.Run("policy_violation", func(t *testing.T) {
		flows, _, _ := attackFlows(s, schemas.AlertPolicyViolation)
		if distinct(flows, src) != 1 || distinct(flows, port) != 1 || flowSpan(flows) > time.Minute {
			t.Errorf("violation flows: %d sources, %d ports, span %s", distinct(flows, src), distinct(flows, port), flowSpan(flows))
		}
	})
}

type edgeKey struct {
	src, dst string
	port     uint16
	proto    uint8
}

// The scenario under the scenario policy, run through the enricher with
// the scenario's own logins: normal traffic stays below every detector's
// threshold and each attack is what it claims to be.
func TestScenarioAgainstPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a full-rate scenario")
	}
	m := loadScenarioPolicy(t)
	ids := enrich.NewIdentityStore(8 * time.Hour)
	s := NewScenario(ScenarioConfig{Seed: 11, Start: scenarioStart})
	for _, e := range s.Events {
		for _, l := range e.AccessLines {
			ids.Observe(&schemas.AccessEvent{Time: uint64(l.Time.UnixNano()), User: l.User, Action: l.Action,
				SrcAddr: schemas.AddrFromNetip(mustAddr(t, l.SrcAddr)), Outcome: outcome(l.Outcome)})
		}
	}
	enr := enrich.NewEnricher(m, ids)
	learningEnd := uint64(scenarioStart.Add(DefaultScenarioLearning).UnixNano())

	type pairMinute struct {
		src, dst string
		minute   int
	}
	bytesByStart := map[pairMinute]uint64{}
	bytesByEnd := map[pairMinute]uint64{}
	baseline := map[edgeKey]bool{}
	newEdges := map[edgeKey]string{}
	type fanKey struct {
		src   schemas.Addr
		port  uint16
		proto uint8
	}
	fanOut := map[fanKey]map[schemas.Addr]bool{}
	type hostKey struct{ src, dst schemas.Addr }
	ports := map[hostKey]map[uint16]bool{}
	var b schemas.FlowBatch
	var r enrich.Result
	for _, e := range s.Events {
		for i := range e.Flows {
			f := &e.Flows[i]
			enr.EnrichFlow(&b, f, &r)
			edge := edgeKey{r.SrcSegment, r.DstSegment, f.DstPort, f.Proto}
			if f.TimeStart < learningEnd {
				baseline[edge] = true
			} else if !baseline[edge] {
				newEdges[edge] = e.Label
			}
			pm := func(ns uint64) pairMinute {
				return pairMinute{r.SrcSegment, r.DstSegment, int(time.Unix(0, int64(ns)).Sub(scenarioStart) / time.Minute)}
			}
			bytesByStart[pm(f.TimeStart)] += f.Bytes
			bytesByEnd[pm(f.TimeEnd)] += f.Bytes

			intoDB := r.DstSegment == "db" && r.SrcSegment != "db"
			switch e.Label {
			case "":
				if r.Verdict != policy.VerdictAllowed && r.Verdict != policy.VerdictIntraSegment {
					t.Fatalf("normal flow %s → %s:%d/%d: %s", f.SrcAddr, f.DstAddr, f.DstPort, f.Proto, r.Verdict)
				}
				if intoDB && r.SrcIdentity == "" {
					t.Fatalf("normal flow %s → %s:%d into db has no identity", f.SrcAddr, f.DstAddr, f.DstPort)
				}
				if r.SrcSegment != r.DstSegment {
					k := fanKey{f.SrcAddr, f.DstPort, f.Proto}
					if fanOut[k] == nil {
						fanOut[k] = map[schemas.Addr]bool{}
					}
					fanOut[k][f.DstAddr] = true
				}
				hk := hostKey{f.SrcAddr, f.DstAddr}
				if ports[hk] == nil {
					ports[hk] = map[uint16]bool{}
				}
				ports[hk][f.DstPort] = true
			case schemas.AlertPolicyViolation:
				if r.Verdict != policy.VerdictViolation {
					t.Errorf("policy_violation flow: verdict %s", r.Verdict)
				}
			case schemas.AlertUnattributedAccess:
				if r.Verdict != policy.VerdictAllowed || !intoDB || r.SrcIdentity != "" {
					t.Errorf("unattributed_access flow: verdict %s, %s → %s, identity %q", r.Verdict, r.SrcSegment, r.DstSegment, r.SrcIdentity)
				}
			case schemas.AlertLateralChain:
				if r.Verdict != policy.VerdictAllowed || r.SrcIdentity != "mallory" {
					t.Errorf("lateral_chain flow %s → %s: verdict %s, identity %q", r.SrcSegment, r.DstSegment, r.Verdict, r.SrcIdentity)
				}
			default:
				if r.Verdict != policy.VerdictAllowed && r.Verdict != policy.VerdictIntraSegment {
					t.Errorf("%s flow: verdict %s", e.Label, r.Verdict)
				}
				if intoDB && r.SrcIdentity == "" {
					t.Errorf("%s flow into db has no identity", e.Label)
				}
			}
		}
	}

	// new_edge: only the attack's edge and the violation's.
	wantEdges := map[edgeKey]string{
		{"app", "web", 9200, 6}: schemas.AlertNewEdge,
		{"web", "db", 22, 6}:    schemas.AlertPolicyViolation,
	}
	if diff := cmp.Diff(newEdges, wantEdges, cmp.AllowUnexported(edgeKey{})); diff != "" {
		t.Errorf("edges first seen after learning (-got +want):\n%s", diff)
	}
	// address_scan and port_scan: normal sources stay far below.
	for k, hosts := range fanOut {
		if len(hosts) >= 20 {
			t.Errorf("normal source %s reaches %d hosts in other segments on %d/%d", k.src, len(hosts), k.port, k.proto)
		}
	}
	for k, p := range ports {
		if len(p) >= 10 {
			t.Errorf("normal source %s reaches %d ports of %s", k.src, len(p), k.dst)
		}
	}
	// volume_spike: per pair, each minute against mean+3σ of the minutes
	// before it (once 10 exist); only the spike minute of app→external
	// exceeds, by far. Checked whether minutes bucket flows by start or end.
	spike := newAttackSchedule(DefaultScenarioLearning).spike
	minutes := int(s.Duration / time.Minute)
	for name, byMinute := range map[string]map[pairMinute]uint64{"start": bytesByStart, "end": bytesByEnd} {
		pairs := map[[2]string]bool{}
		for k := range byMinute {
			pairs[[2]string{k.src, k.dst}] = true
		}
		for p := range pairs {
			var samples []float64
			for mi := 0; mi < minutes; mi++ {
				x := float64(byMinute[pairMinute{p[0], p[1], mi}])
				isSpike := p == [2]string{"app", policy.External} && mi == spike
				if len(samples) >= 10 {
					mean, sd := meanSD(samples)
					switch {
					case isSpike && x < 15*mean:
						t.Errorf("by %s: spike minute %d of %v: %.0f bytes, mean %.0f", name, mi, p, x, mean)
					case !isSpike && x > mean+3*sd:
						t.Errorf("by %s: minute %d of %v: %.0f bytes above mean %.0f + 3×%.0f", name, mi, p, x, mean, sd)
					}
				}
				if !isSpike {
					samples = append(samples, x)
				}
			}
		}
	}
}

func meanSD(xs []float64) (float64, float64) {
	var sum, sq float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	for _, x := range xs {
		sq += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sq / float64(len(xs)))
}

func outcome(s string) schemas.Outcome {
	if s == "success" {
		return schemas.OutcomeSuccess
	}
	return schemas.OutcomeFailure
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// syslogListener receives RFC 5424 sshd lines and parses them as the
// access collector does.
type syslogListener struct {
	conn   *net.UDPConn
	mu     sync.Mutex
	events []schemas.AccessEvent
	hosts  []string
	err    error
	done   chan struct{}
}

func startSyslogListener(t *testing.T) *syslogListener {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l := &syslogListener{conn: conn, done: make(chan struct{})}
	t.Cleanup(func() { conn.Close(); <-l.done })
	sshd, err := parser.New(parser.FormatSSHD)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(l.done)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			var msg parser.SyslogMessage
			var ev schemas.AccessEvent
			err = parser.ParseSyslog(buf[:n], time.Now(), nil, &msg)
			if err == nil && msg.AppName != "sshd" {
				err = fmt.Errorf("app %q", msg.AppName)
			}
			if err == nil {
				err = sshd.Parse(msg.Message, parser.Meta{Received: time.Now(), Host: msg.Hostname}, &ev)
				ev.Time = uint64(msg.Timestamp.UnixNano())
			}
			l.mu.Lock()
			if err != nil && l.err == nil {
				l.err = fmt.Errorf("%q: %w", buf[:n], err)
			}
			l.events = append(l.events, ev)
			l.hosts = append(l.hosts, msg.Hostname)
			l.mu.Unlock()
		}
	}()
	return l
}

func TestRunScenarioDeliversTotals(t *testing.T) {
	s := NewScenario(ScenarioConfig{Seed: 5, Start: scenarioStart, NormalRate: 3})
	flows, lines := startCollector(t, ProtocolIPFIX), startSyslogListener(t)
	tot, err := RunScenario(context.Background(), s, flows.addr(), "udp://"+lines.conn.LocalAddr().String(), math.Inf(1))
	if err != nil {
		t.Fatal(err)
	}
	want := ScenarioTotals{ByLabel: map[string]uint64{}}
	var wantLines []AccessLine
	for _, e := range s.Events {
		want.Flows += uint64(len(e.Flows))
		want.Lines += uint64(len(e.AccessLines))
		want.ByLabel[e.Label] += uint64(len(e.Flows) + len(e.AccessLines))
		wantLines = append(wantLines, e.AccessLines...)
	}
	if diff := cmp.Diff(tot, want); diff != "" {
		t.Fatalf("totals (-got +want):\n%s", diff)
	}
	if want.ByLabel[schemas.AlertAuthBruteforce] != 16+16 || want.Lines != 18 {
		t.Errorf("unexpected scenario shape: %v", want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		flows.mu.Lock()
		gotFlows := flows.got.Flows
		flows.mu.Unlock()
		lines.mu.Lock()
		gotLines := len(lines.events)
		lines.mu.Unlock()
		if gotFlows == tot.Flows && uint64(gotLines) == tot.Lines {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d flows and %d lines, sent %d and %d", gotFlows, gotLines, tot.Flows, tot.Lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if flows.err != nil {
		t.Fatal(flows.err)
	}
	lines.mu.Lock()
	defer lines.mu.Unlock()
	if lines.err != nil {
		t.Fatal(lines.err)
	}
	for i, ev := range lines.events {
		w := wantLines[i] // one socket, loopback: in order
		if ev.User != w.User || ev.SrcAddr.Netip().Unmap().String() != w.SrcAddr || ev.Time != uint64(w.Time.UnixNano()) ||
			(w.Outcome == "success") != (ev.Outcome == schemas.OutcomeSuccess) || ev.Action != w.Action {
			t.Errorf("line %d parsed as %+v, want %+v", i, ev, w)
		}
	}
	if !strings.HasPrefix(lines.hosts[0], "web-") {
		t.Errorf("first line from host %q", lines.hosts[0])
	}
}

// Pacing: an event is never sent before At/scale of wall time has passed,
// so after a short run only the scenario's first minutes are out.
func TestRunScenarioPacing(t *testing.T) {
	s := NewScenario(ScenarioConfig{Seed: 6, Start: scenarioStart, NormalRate: 3, TimeScale: 600})
	flows := startCollector(t, ProtocolIPFIX)
	lines := startSyslogListener(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	tot, err := RunScenario(ctx, s, flows.addr(), lines.conn.LocalAddr().String(), 0) // 0: s.TimeScale
	elapsed := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the deadline", err)
	}
	var allowed, total uint64
	horizon := time.Duration(float64(elapsed) * s.TimeScale)
	for _, e := range s.Events {
		total += uint64(len(e.Flows))
		if e.At <= horizon {
			allowed += uint64(len(e.Flows))
		}
	}
	if tot.Flows == 0 || tot.Flows > allowed || tot.Flows >= total/2 {
		t.Errorf("sent %d flows in %s: want some, at most the %d due by event time %s (of %d)", tot.Flows, elapsed, allowed, horizon, total)
	}
	if tot.Lines != 0 {
		t.Errorf("sent %d lines: the first is due after the learning period", tot.Lines)
	}
}

func TestScenarioTotalsString(t *testing.T) {
	got := ScenarioTotals{Flows: 3, Lines: 1, ByLabel: map[string]uint64{"": 2, "port_scan": 2}}.String()
	if want := "3 flows, 1 lines (normal=2 port_scan=2)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFoldInternal(t *testing.T) {
	seen := map[string]bool{}
	for h := 0; h < 400; h++ {
		seen[foldInternal(v4(10, 1, byte(h/250), byte(10+h%250))).String()] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if want := []string{"10.1.0.10", "10.1.0.11", "10.1.0.12", "10.1.0.13", "10.1.0.14", "10.1.0.15"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("web pool %v, want %v", keys, want)
	}
	for _, a := range []schemas.Addr{v4(10, 3, 53, 53), v4(192, 0, 2, 1), schemas.AddrFromNetip(addr6(1, 0x53, 0x53))} {
		if got := foldInternal(a); got != a {
			t.Errorf("%s folded to %s", a, got)
		}
	}
	if got := foldInternal(schemas.AddrFromNetip(addr6(1, 3, 200))).String(); got != "2001:db8:1:3::2" {
		t.Errorf("v6 db host folded to %s", got)
	}
}
