package engine

import (
	"hash/fnv"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/enrich"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

const testPolicy = `
segments:
  - name: web
    cidrs: [10.1.0.0/16]
  - name: app
    cidrs: [10.3.0.0/16]
  - name: db
    cidrs: [10.2.0.0/16]
    tags: [pci-cde, sensitive]
  - name: mgmt
    cidrs: [10.9.0.0/16]
    tags: [critical]
inventory:
  - cidr: 10.3.0.10/32
    workload: checkout-api
    service_account: svc-checkout
rules:
  - name: internet-to-web
    from: [external]
    to: [web]
    ports: ["443/tcp"]
  - name: web-to-app
    from: [web]
    to: [app]
    ports: ["8080/tcp"]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: ["5432/tcp"]
  - name: app-to-mgmt
    from: [app]
    to: [mgmt]
    ports: ["22/tcp"]
default: deny
`

// t0 is the start of the test timeline: a multiple of every window.
var t0 = uint64(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())

func at(d time.Duration) uint64 { return t0 + uint64(d) }

func testMatcher(t testing.TB, src string) *policy.Matcher {
	t.Helper()
	p, err := policy.Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func addr(s string) schemas.Addr { return schemas.AddrFromNetip(netip.MustParseAddr(s)) }

// flowSpec is a flow before enrichment.
type flowSpec struct {
	src, dst       string
	sport, dport   uint16
	proto          uint8
	flags          uint8
	packets, bytes uint64
	at             uint64
	end            uint64 // TimeEnd when after at
	identity       string // overrides the enricher's source identity
}

// enrichFlow builds and enriches a flow the way the enrich stage would.
func enrichFlow(en *enrich.Enricher, s flowSpec) schemas.Flow {
	f := schemas.Flow{SrcAddr: addr(s.src), DstAddr: addr(s.dst), SrcPort: s.sport, DstPort: s.dport,
		Proto: s.proto, TCPFlags: s.flags, Packets: max(s.packets, 1), Bytes: max(s.bytes, 60),
		TimeStart: s.at, TimeEnd: max(s.at, s.end)}
	if f.Proto == 0 {
		f.Proto = 6
	}
	if f.TCPFlags == 0 && f.Proto == 6 {
		f.TCPFlags = 0x1b
	}
	if f.SrcPort == 0 && f.Proto != 1 {
		f.SrcPort = 40000
	}
	var r enrich.Result
	en.EnrichFlow(nil, &f, &r)
	if s.identity != "" {
		r.SrcIdentity = s.identity
	}
	f.SrcSegment, f.DstSegment, f.SrcWorkload, f.DstWorkload = r.SrcSegment, r.DstSegment, r.SrcWorkload, r.DstWorkload
	f.SrcIdentity, f.DstIdentity, f.Verdict, f.Rule = r.SrcIdentity, r.DstIdentity, schemas.Verdict(r.Verdict), r.Rule
	return f
}

// harness wires n engines the way the detect stage does: flows and access
// events partitioned by source address, Keyed events marshalled, routed
// by Key and unmarshalled (a Kafka re-key topic).
type harness struct {
	t       testing.TB
	engines []*Engine
	en      *enrich.Enricher
	alerts  []*schemas.Alert
	queue   [][]byte
	ei      int    // replay: next event
	next    uint64 // replay: next Advance
}

func newHarness(t testing.TB, n int, cfg Configuration, m *policy.Matcher) *harness {
	h := &harness{t: t, en: enrich.NewEnricher(m, nil)}
	for i := 0; i < n; i++ {
		h.engines = append(h.engines, New(cfg, m, h.emit, h.forward))
	}
	return h
}

func (h *harness) emit(a *schemas.Alert) { h.alerts = append(h.alerts, a) }

func (h *harness) forward(k *Keyed) {
	b, err := k.MarshalBinary()
	if err != nil {
		h.t.Fatal(err)
	}
	h.queue = append(h.queue, b)
}

func partition(key []byte, n int) int {
	f := fnv.New32a()
	f.Write(key)
	return int(f.Sum32() % uint32(n))
}

func (h *harness) drain() {
	for len(h.queue) > 0 {
		b := h.queue[0]
		h.queue = h.queue[1:]
		var k Keyed
		if err := k.UnmarshalBinary(b); err != nil {
			h.t.Fatal(err)
		}
		h.engines[partition([]byte(k.Key), len(h.engines))].ObserveKeyed(&k)
	}
}

func (h *harness) flow(s flowSpec) {
	f := enrichFlow(h.en, s)
	h.observe(&f)
}

func (h *harness) observe(f *schemas.Flow) {
	h.engines[partition(f.SrcAddr[:], len(h.engines))].ObserveFlow(nil, f)
	h.drain()
}

func (h *harness) access(ev schemas.AccessEvent) {
	h.engines[partition(ev.SrcAddr[:], len(h.engines))].ObserveAccess(&ev)
	h.drain()
}

func (h *harness) advance(now uint64) {
	for _, e := range h.engines {
		e.Advance(now)
	}
	h.drain()
	for _, e := range h.engines {
		e.Advance(now) // owners evaluate partials forwarded above
	}
	h.drain()
}

// firsts returns the first emissions, sorted by ID.
func (h *harness) firsts() []*schemas.Alert {
	var out []*schemas.Alert
	for _, a := range h.alerts {
		if !a.Update {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// finals returns, per ID, the last emission, sorted by ID.
func (h *harness) finals() []*schemas.Alert {
	last := map[string]*schemas.Alert{}
	for _, a := range h.alerts {
		last[a.ID] = a
	}
	out := make([]*schemas.Alert, 0, len(last))
	for _, a := range last {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func syn(src, dst string, port uint16, at uint64) flowSpec {
	return flowSpec{src: src, dst: dst, dport: port, proto: 6, flags: 0x02, packets: 1, bytes: 44, at: at}
}
