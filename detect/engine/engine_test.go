package engine

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/enrich"
	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfiguration()
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfiguration().Validate() = %v", err)
	}
	type summary struct {
		Enabled                              [8]bool
		PVWindow, Baseline, Learning         time.Duration
		AddrThreshold, PortThreshold         int
		ScanWindow                           time.Duration
		K, Alpha                             float64
		MinSamples                           int
		AuthThreshold                        uint64
		AuthWindow, UAWindow, LCWindow       time.Duration
		Tag                                  string
		Suppress, Lateness                   time.Duration
		MaxSources, MaxKeysPerSource, MaxTrk int
	}
	got := summary{
		Enabled: [8]bool{c.PolicyViolation.Enabled, c.NewEdge.Enabled, c.AddressScan.Enabled, c.PortScan.Enabled,
			c.VolumeSpike.Enabled, c.AuthBruteforce.Enabled, c.UnattributedAccess.Enabled, c.LateralChain.Enabled},
		PVWindow: c.PolicyViolation.Window, Baseline: c.NewEdge.Baseline, Learning: c.NewEdge.Learning,
		AddrThreshold: c.AddressScan.Threshold, PortThreshold: c.PortScan.Threshold, ScanWindow: c.AddressScan.Window,
		K: c.VolumeSpike.K, Alpha: c.VolumeSpike.Alpha, MinSamples: c.VolumeSpike.MinSamples,
		AuthThreshold: c.AuthBruteforce.Threshold, AuthWindow: c.AuthBruteforce.Window,
		UAWindow: c.UnattributedAccess.Window, LCWindow: c.LateralChain.Window, Tag: c.UnattributedAccess.Tag,
		Suppress: c.Suppress, Lateness: c.Lateness, MaxSources: c.MaxSources, MaxKeysPerSource: c.MaxKeysPerSource,
		MaxTrk: c.AddressScan.MaxTracked,
	}
	want := summary{
		Enabled:  [8]bool{true, true, true, true, true, true, true, true},
		PVWindow: time.Minute, Baseline: 7 * 24 * time.Hour, Learning: time.Hour,
		AddrThreshold: 25, PortThreshold: 15, ScanWindow: 5 * time.Minute,
		K: 3, Alpha: 0.1, MinSamples: 10, AuthThreshold: 10, AuthWindow: 5 * time.Minute,
		UAWindow: time.Minute, LCWindow: time.Hour, Tag: "sensitive",
		Suppress: 15 * time.Minute, Lateness: 30 * time.Second, MaxSources: 1 << 20, MaxKeysPerSource: 64, MaxTrk: 64,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("DefaultConfiguration (-got +want):\n%s", diff)
	}
}

func TestConfigValidateNamesKey(t *testing.T) {
	cases := []struct {
		key    string
		mutate func(*Configuration)
	}{
		{"detect.policy_violation.window", func(c *Configuration) { c.PolicyViolation.Window = 0 }},
		{"detect.new_edge.baseline", func(c *Configuration) { c.NewEdge.Baseline = -time.Hour }},
		{"detect.new_edge.learning", func(c *Configuration) { c.NewEdge.Learning = -time.Hour }},
		{"detect.address_scan.threshold", func(c *Configuration) { c.AddressScan.Threshold = 0 }},
		{"detect.address_scan.max_tracked", func(c *Configuration) { c.AddressScan.MaxTracked = 10 }},
		{"detect.address_scan.min_probe_share", func(c *Configuration) { c.AddressScan.MinProbeShare = 2 }},
		{"detect.port_scan.window", func(c *Configuration) { c.PortScan.Window = 0 }},
		{"detect.volume_spike.k", func(c *Configuration) { c.VolumeSpike.K = 0 }},
		{"detect.volume_spike.alpha", func(c *Configuration) { c.VolumeSpike.Alpha = 1 }},
		{"detect.volume_spike.min_samples", func(c *Configuration) { c.VolumeSpike.MinSamples = 0 }},
		{"detect.auth_bruteforce.threshold", func(c *Configuration) { c.AuthBruteforce.Threshold = 0 }},
		{"detect.auth_bruteforce.window", func(c *Configuration) { c.AuthBruteforce.Window = 0 }},
		{"detect.unattributed_access.tag", func(c *Configuration) { c.UnattributedAccess.Tag = "" }},
		{"detect.lateral_chain.window", func(c *Configuration) { c.LateralChain.Window = 0 }},
		{"detect.suppress", func(c *Configuration) { c.Suppress = -1 }},
		{"detect.max_sources", func(c *Configuration) { c.MaxSources = 0 }},
	}
	for _, tc := range cases {
		c := DefaultConfiguration()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.key+": ") {
			t.Errorf("%s: Validate() = %v, want an error naming the key", tc.key, err)
		}
	}
}

// attackEvent is one input of the mixed workload: a flow or an access event.
type attackEvent struct {
	t    uint64
	flow *flowSpec
	acc  *schemas.AccessEvent
}

// workload is simulated normal traffic (internal/simulate) enriched with
// m plus one instance of every attack, in event-time order, over minutes.
func workload(t testing.TB, m *policy.Matcher, minutes, perSecond int) (flows []schemas.Flow, events []attackEvent) {
	en := enrich.NewEnricher(m, nil)
	clock := time.Unix(0, int64(t0))
	g := simulate.NewGenerator(7, simulate.WithClock(func() time.Time { return clock }))
	for s := 0; s < minutes*60; s++ {
		clock = time.Unix(0, int64(at(time.Duration(s)*time.Second)))
		for i := 0; i < perSecond; i++ {
			var f schemas.Flow
			g.Next(&f)
			var r enrich.Result
			en.EnrichFlow(nil, &f, &r)
			f.SrcSegment, f.DstSegment, f.SrcIdentity, f.DstIdentity = r.SrcSegment, r.DstSegment, r.SrcIdentity, r.DstIdentity
			f.Verdict, f.Rule = schemas.Verdict(r.Verdict), r.Rule
			flows = append(flows, f)
		}
	}
	// Exporters report a flow when it ends.
	add := func(f flowSpec) { events = append(events, attackEvent{t: max(f.at, f.end), flow: &f}) }
	base := at(12 * time.Minute)
	for i := 0; i < 40; i++ {
		add(syn("10.1.7.7", fmt.Sprintf("10.2.9.%d", i+1), 5432, base+uint64(i)*uint64(time.Second)))
		add(syn("198.51.100.77", "10.1.0.20", uint16(2000+i), base+uint64(i)*uint64(time.Second)))
	}
	for i := 0; i < 12; i++ {
		ev := failedLogin("203.0.113.66", "root", base+uint64(i)*uint64(time.Second))
		events = append(events, attackEvent{t: ev.Time, acc: &ev})
		ev2 := failedLogin(fmt.Sprintf("192.0.2.%d", 100+i), "alice", base+uint64(i)*uint64(time.Second))
		events = append(events, attackEvent{t: ev2.Time, acc: &ev2})
	}
	add(flowSpec{src: "10.1.0.44", dst: "10.3.0.44", dport: 8080, identity: "mallory", at: base})
	add(flowSpec{src: "10.3.0.44", dst: "10.2.0.44", dport: 5432, identity: "mallory", at: base + uint64(time.Minute)})
	add(flowSpec{src: "10.3.0.45", dst: "10.9.0.1", dport: 2222, at: base + uint64(2*time.Minute)})
	// Exfiltration over three minutes, exported as one record a minute
	// (active timeout).
	for i := 0; i < 3; i++ {
		add(flowSpec{src: "10.3.0.45", dst: "10.2.0.45", dport: 5432, bytes: 1_500_000_000, packets: 1_200_000,
			at: base + uint64(3+i)*uint64(time.Minute), end: base + uint64(4+i)*uint64(time.Minute) - 1})
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].t < events[j].t })
	return flows, events
}

// replay feeds flows[from:to] and the events due before them to h in
// order, advancing every second of event time.
func replay(h *harness, flows []schemas.Flow, events []attackEvent, from, to int) {
	if h.next == 0 {
		h.next = t0 + uint64(time.Second)
	}
	feed := func(ev attackEvent) {
		if ev.flow != nil {
			ff := enrichFlow(h.en, *ev.flow)
			h.observe(&ff)
		} else {
			h.access(*ev.acc)
		}
	}
	for i := from; i < to; i++ {
		f := &flows[i]
		for ; h.ei < len(events) && events[h.ei].t <= f.TimeEnd; h.ei++ {
			feed(events[h.ei])
		}
		h.observe(f)
		if f.TimeEnd >= h.next {
			h.advance(f.TimeEnd)
			h.next = f.TimeEnd + uint64(time.Second)
		}
	}
	if to == len(flows) {
		for ; h.ei < len(events); h.ei++ {
			feed(events[h.ei])
		}
		h.advance(flows[len(flows)-1].TimeEnd + uint64(10*time.Minute))
	}
}

func scaleCfg() Configuration {
	c := DefaultConfiguration()
	c.NewEdge.Learning = 5 * time.Minute
	return c
}

// TestScaleOut: engines fed a partition of the sources each, with keyed
// events routed by key, raise exactly the alerts of one engine.
func TestScaleOut(t *testing.T) {
	m := testMatcher(t, testPolicy)
	flows, events := workload(t, m, 20, 100)
	one := newHarness(t, 1, scaleCfg(), m)
	replay(one, flows, events, 0, len(flows))
	kinds := map[string]int{}
	for _, a := range one.firsts() {
		kinds[a.Kind]++
	}
	for _, k := range schemas.AlertKinds {
		if kinds[k] == 0 {
			t.Errorf("one engine raised no %s alert: %v", k, kinds)
		}
	}
	for _, n := range []int{2, 3} {
		h := newHarness(t, n, scaleCfg(), m)
		replay(h, flows, events, 0, len(flows))
		if diff := cmp.Diff(h.firsts(), one.firsts()); diff != "" {
			t.Errorf("%d engines: first emissions (-got +want):\n%s", n, diff)
		}
		if diff := cmp.Diff(h.finals(), one.finals()); diff != "" {
			t.Errorf("%d engines: final emissions (-got +want):\n%s", n, diff)
		}
	}
}

// TestDeterministicIDs: two engines fed the same input raise the same
// alerts, IDs included.
func TestDeterministicIDs(t *testing.T) {
	m := testMatcher(t, testPolicy)
	flows, events := workload(t, m, 15, 50)
	a, b := newHarness(t, 1, scaleCfg(), m), newHarness(t, 1, scaleCfg(), m)
	replay(a, flows, events, 0, len(flows))
	replay(b, flows, events, 0, len(flows))
	if len(a.alerts) == 0 {
		t.Fatal("no alerts")
	}
	if diff := cmp.Diff(a.alerts, b.alerts); diff != "" {
		t.Errorf("(-a +b):\n%s", diff)
	}
}

// TestSnapshotRestore: a restart mid-window from a snapshot continues as if
// nothing happened: no duplicate first emissions, same alerts.
func TestSnapshotRestore(t *testing.T) {
	m := testMatcher(t, testPolicy)
	flows, events := workload(t, m, 20, 50)
	whole := newHarness(t, 1, scaleCfg(), m)
	replay(whole, flows, events, 0, len(flows))

	// Cut in the middle of the attacks' windows.
	cut := sort.Search(len(flows), func(i int) bool { return flows[i].TimeEnd > at(12*time.Minute+20*time.Second) })
	h := newHarness(t, 1, scaleCfg(), m)
	replay(h, flows, events, 0, cut)
	snap, err := h.engines[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h.engines[0] = New(scaleCfg(), m, h.emit, h.forward)
	if err := h.engines[0].UnmarshalBinary(snap); err != nil {
		t.Fatal(err)
	}
	replay(h, flows, events, cut, len(flows))
	if diff := cmp.Diff(sorted(h.alerts), sorted(whole.alerts)); diff != "" {
		t.Errorf("restored run (-got +want):\n%s", diff)
	}
	seen := map[string]bool{}
	for _, a := range h.firsts() {
		if seen[a.ID] {
			t.Errorf("duplicate first emission %s %s", a.ID, a.Summary)
		}
		seen[a.ID] = true
	}
	if err := h.engines[0].UnmarshalBinary([]byte{9}); err == nil {
		t.Error("UnmarshalBinary accepted a bad version")
	}
}

// sorted orders emissions by ID, first emission before updates.
func sorted(as []*schemas.Alert) []*schemas.Alert {
	out := append([]*schemas.Alert(nil), as...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return !out[i].Update && out[j].Update
	})
	return out
}

func TestSuppression(t *testing.T) {
	m := testMatcher(t, testPolicy)
	h := newHarness(t, 1, only(schemas.AlertPolicyViolation), m)
	// A violation every 30s for 40 minutes: one alert at 0, the next
	// window after 15m of suppression at 15m, then at 30m.
	for s := 0; s < 80; s++ {
		ts := at(time.Duration(s) * 30 * time.Second)
		h.flow(flowSpec{src: "10.1.0.5", dst: "10.2.0.10", dport: 22, at: ts})
		h.advance(ts)
	}
	var times []time.Duration
	for _, a := range h.firsts() {
		times = append(times, time.Duration(a.Time-t0))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	if diff := cmp.Diff(times, []time.Duration{0, 15 * time.Minute, 30 * time.Minute}); diff != "" {
		t.Errorf("first emissions at (-got +want):\n%s", diff)
	}
	for _, a := range h.alerts {
		if a.Update && a.Count != 2 {
			t.Errorf("update %s count %d, want 2 (two flows per 1m window)", a.ID, a.Count)
		}
	}
}

// TestBoundedMemory: 1M distinct scanning sources never grow the tracked
// sources beyond MaxSources.
func TestBoundedMemory(t *testing.T) {
	cfg := only(schemas.AlertPortScan, schemas.AlertAddressScan)
	cfg.MaxSources = 10_000
	m := testMatcher(t, testPolicy)
	e := New(cfg, m, func(*schemas.Alert) {}, func(*Keyed) {})
	f := schemas.Flow{DstAddr: addr("10.2.0.10"), SrcPort: 40000, DstPort: 22, Proto: 6, TCPFlags: 0x02, Packets: 1, Bytes: 44,
		SrcSegment: policy.External, DstSegment: "db", Verdict: schemas.VerdictViolation}
	maxSeen := 0
	for i := 0; i < 1_000_000; i++ {
		f.SrcAddr = schemas.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
		f.TimeStart = at(time.Duration(i) * time.Millisecond)
		f.TimeEnd = f.TimeStart
		e.ObserveFlow(nil, &f)
		if i%1000 == 0 {
			e.Advance(f.TimeEnd)
			maxSeen = max(maxSeen, e.Stats().Sources)
		}
	}
	st := e.Stats()
	maxSeen = max(maxSeen, st.Sources)
	if maxSeen > cfg.MaxSources || len(e.srcs) > cfg.MaxSources {
		t.Errorf("tracked %d sources (arena %d), cap %d", maxSeen, len(e.srcs), cfg.MaxSources)
	}
	if st.Evicted == 0 && st.Sources == cfg.MaxSources {
		t.Errorf("no eviction at the cap: %+v", st)
	}
}

// permissivePolicy allows everything the simulator's normal traffic does.
const permissivePolicy = `
segments:
  - name: web
    cidrs: [10.1.0.0/16, "2001:db8:1:1::/64"]
  - name: app
    cidrs: [10.3.0.0/16, "2001:db8:1:2::/64"]
  - name: dns
    cidrs: [10.3.53.0/24, "2001:db8:1:53::/64"]
  - name: db
    cidrs: [10.2.0.0/16, "2001:db8:1:3::/64"]
    tags: [pci-cde, sensitive]
rules:
  - {name: internet-to-web, from: [external], to: [web], ports: ["443/tcp", "80/tcp"]}
  - {name: ssh, from: [external], to: [web, app, db], ports: ["22/tcp"]}
  - {name: web-to-app, from: [web], to: [app], ports: ["8080/tcp"]}
  - {name: app-to-db, from: [app, web], to: [db], ports: ["5432/tcp", "3306/tcp"]}
  - {name: dns, from: [web, app, db], to: [dns], ports: ["53/udp", "123/udp"]}
  - {name: icmp, from: [web, app, db], to: [web, app, db], ports: ["icmp", "icmpv6"]}
  - {name: app-dns, from: [app], to: [dns], ports: ["9092/tcp", "6379/tcp"]}
  - {name: dns-app, from: [dns], to: [app], ports: ["9092/tcp", "6379/tcp"]}
default: deny
`

// TestNormalTrafficQuiet: the simulator's normal traffic raises no
// address_scan, port_scan or volume_spike (and, under a policy allowing
// it, no policy_violation).
func TestNormalTrafficQuiet(t *testing.T) {
	deploy, err := os.ReadFile("../../deploy/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, policy string
		rate         int
		quiet        []string
	}{
		{"permissive", permissivePolicy, 1000, []string{schemas.AlertPolicyViolation, schemas.AlertAddressScan, schemas.AlertPortScan, schemas.AlertVolumeSpike}},
		{"deploy", string(deploy), 300, []string{schemas.AlertAddressScan, schemas.AlertPortScan, schemas.AlertVolumeSpike}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMatcher(t, tc.policy)
			flows, _ := workload(t, m, 30, tc.rate)
			h := newHarness(t, 1, DefaultConfiguration(), m)
			replay(h, flows, nil, 0, len(flows))
			count := map[string]int{}
			for _, a := range h.firsts() {
				count[a.Kind]++
				for _, k := range tc.quiet {
					if a.Kind == k && count[k] <= 3 {
						t.Errorf("normal traffic raised %s: %s", a.Kind, a.Summary)
					}
				}
			}
			t.Logf("alerts on normal traffic: %v", count)
		})
	}
}

func TestKeyedRoundTrip(t *testing.T) {
	for _, k := range []Keyed{
		{Kind: schemas.AlertNewEdge, Key: "web|db|5432|6", Time: t0, Last: t0 + 5, Since: t0 - 9, SrcSegment: "web", DstSegment: "db",
			SrcAddr: addr("10.1.0.5"), DstAddr: addr("2001:db8::1"), DstPort: 5432, Proto: 6},
		{Kind: schemas.AlertVolumeSpike, Key: "web|db", Time: t0, Count: 12, Bytes: 1 << 40},
		{Kind: schemas.AlertAuthBruteforce, Key: "alice", Time: 1, Outcome: schemas.OutcomeFailure, SrcAddr: addr("192.0.2.1")},
	} {
		b, err := k.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Keyed
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got, k); diff != "" {
			t.Errorf("round trip (-got +want):\n%s", diff)
		}
	}
	if _, err := (&Keyed{Kind: "nope"}).MarshalBinary(); err == nil {
		t.Error("MarshalBinary accepted an unknown kind")
	}
}

func FuzzKeyedUnmarshal(f *testing.F) {
	for _, k := range []Keyed{
		{Kind: schemas.AlertNewEdge, Key: "web|db|5432|6", Time: t0, SrcSegment: "web", DstSegment: "db", SrcAddr: addr("10.1.0.5"), DstAddr: addr("2001:db8::1"), DstPort: 5432, Proto: 6},
		{Kind: schemas.AlertLateralChain, Key: "alice", Time: 1},
	} {
		b, _ := k.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		var k Keyed
		if err := k.UnmarshalBinary(data); err != nil {
			return
		}
		b, err := k.MarshalBinary()
		if err != nil {
			t.Fatalf("re-marshal of a decoded event: %v", err)
		}
		var k2 Keyed
		if err := k2.UnmarshalBinary(b); err != nil {
			t.Fatalf("decoding a re-marshalled event: %v", err)
		}
		if k2 != k {
			t.Fatalf("round trip changed the event: %+v vs %+v", k2, k)
		}
	})
}
