package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

// typeTotals are per-flow_type row counts and counter sums.
type typeTotals struct {
	Flows, Bytes, Packets uint64
}

func (w *typeTotals) add(t simulate.Totals) {
	w.Flows += t.Flows
	w.Bytes += t.Bytes
	w.Packets += t.Packets
}

// flowTotals reads per-flow_type totals back from ClickHouse.
func flowTotals(t testing.TB, ch *testutil.ClickHouseServer) map[string]typeTotals {
	t.Helper()
	rows, err := ch.Conn(t).Query(context.Background(),
		"SELECT flow_type, toUInt64(count()), toUInt64(sum(bytes)), toUInt64(sum(packets)) FROM flowaudit.flows GROUP BY flow_type")
	if err != nil {
		t.Fatalf("querying totals: %v", err)
	}
	defer rows.Close()
	out := map[string]typeTotals{}
	for rows.Next() {
		var ft string
		var tt typeTotals
		if err := rows.Scan(&ft, &tt.Flows, &tt.Bytes, &tt.Packets); err != nil {
			t.Fatal(err)
		}
		out[ft] = tt
	}
	return out
}

func sumFlows(m map[string]typeTotals) uint64 {
	var n uint64
	for _, v := range m {
		n += v.Flows
	}
	return n
}

const countFlows = "SELECT toUInt64(count()) FROM flowaudit.flows"

// TestEndToEndTotals sends known totals in every protocol through
// "flowaudit run" and checks ClickHouse holds exactly those rows, byte and
// packet sums per flow_type, and the announced sampling rate.
func TestEndToEndTotals(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{})
	p.Start()

	want := map[string]typeTotals{}
	for i, tc := range []struct {
		proto  simulate.Protocol
		target string
		ft     string
		rate   uint32
	}{
		{simulate.ProtocolNetFlowV5, p.NetFlowAddr, "netflow_v5", 10},
		{simulate.ProtocolNetFlowV9, p.NetFlowAddr, "netflow_v9", 100},
		{simulate.ProtocolIPFIX, p.NetFlowAddr, "ipfix", 1000},
		{simulate.ProtocolSFlow, p.SFlowAddr, "sflow", 512},
	} {
		tot, err := simulate.Run(context.Background(), simulate.Config{
			Target: tc.target, Protocol: tc.proto, Rate: 20000, Count: 4000 + 7*i, Seed: int64(i + 1), SamplingRate: tc.rate,
		})
		if err != nil {
			t.Fatalf("simulate %s: %v", tc.proto, err)
		}
		w := want[tc.ft]
		w.add(tot)
		want[tc.ft] = w
		t.Logf("sent %s: %s", tc.proto, tot)
	}
	total := sumFlows(want)
	if got := waitFlows(t, ch, total, 60*time.Second); got != total {
		t.Errorf("rows = %d, want %d", got, total)
	}
	if diff := cmp.Diff(flowTotals(t, ch), want); diff != "" {
		t.Errorf("per flow_type totals (-got +want):\n%s", diff)
	}
	// The announced sampling rate lands beside the counters, unscaled.
	rows, err := ch.Conn(t).Query(context.Background(),
		"SELECT flow_type, toUInt64(min(sampling_rate)), toUInt64(max(sampling_rate)) FROM flowaudit.flows GROUP BY flow_type ORDER BY flow_type")
	if err != nil {
		t.Fatal(err)
	}
	gotRates := map[string][2]uint64{}
	for rows.Next() {
		var ft string
		var lo, hi uint64
		if err := rows.Scan(&ft, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		gotRates[ft] = [2]uint64{lo, hi}
	}
	rows.Close()
	wantRates := map[string][2]uint64{"netflow_v5": {10, 10}, "netflow_v9": {100, 100}, "ipfix": {1000, 1000}, "sflow": {512, 512}}
	if diff := cmp.Diff(gotRates, wantRates); diff != "" {
		t.Errorf("sampling_rate per flow_type (-got +want):\n%s", diff)
	}
	// IPv6 flows survive as 16-byte addresses, IPv4 as mapped ones.
	if n := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE IPv6NumToString(src_addr) LIKE '2001:db8:%'"); n == 0 {
		t.Error("no IPv6 source address in flowaudit.flows")
	}
	if n := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE IPv6NumToString(src_addr) LIKE '::ffff:%'"); n == 0 {
		t.Error("no IPv4-mapped source address in flowaudit.flows")
	}
	if got := p.Metric("flowaudit_ingest_decode_errors_total"); got != 0 {
		t.Errorf("decode errors = %v, want 0", got)
	}
	for _, m := range []string{"flowaudit_ingest_lost_datagrams_total", "flowaudit_ingest_lost_flows_total"} {
		if got := p.Metric(m); got != 0 {
			t.Errorf("%s = %v, want 0: nothing was lost", m, got)
		}
	}
}

// exporter sends datagrams from one encoder, so sequence numbers and the
// template cadence carry on across a collector restart.
type exporter struct {
	t    testing.TB
	conn *net.UDPConn
	enc  simulate.Encoder
	gen  *simulate.Generator
	buf  []byte
}

func newExporter(t testing.TB, target string, p simulate.Protocol, seed int64) *exporter {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// TemplateEvery 0: templates only in the very first datagram.
	return &exporter{t: t, conn: conn, enc: simulate.NewEncoder(p, simulate.EncoderOptions{ObservationID: 42}),
		gen: simulate.NewGenerator(seed, simulate.ForProtocol(p))}
}

// send sends n flows, 30 per datagram, paced gently, and returns totals.
func (e *exporter) send(n int) simulate.Totals {
	e.t.Helper()
	var tot simulate.Totals
	flows := make([]schemas.Flow, 30)
	for sent := 0; sent < n; {
		k := min(30, n-sent)
		for i := 0; i < k; i++ {
			e.gen.Next(&flows[i])
			tot.Bytes += flows[i].Bytes
			tot.Packets += flows[i].Packets
		}
		e.buf = e.enc.Encode(e.buf[:0], flows[:k])
		if _, err := e.conn.Write(e.buf); err != nil {
			e.t.Fatalf("send: %v", err)
		}
		tot.Datagrams++
		tot.Flows += uint64(k)
		sent += k
		if tot.Datagrams%20 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return tot
}

// TestRestart stops "flowaudit run" mid-stream, gracefully and with
// SIGKILL, and checks nothing accepted is lost and that the restarted
// collector decodes IPFIX data sets at once from its persisted templates.
func TestRestart(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{extraYAML: ""})
	p.Start()
	exp := newExporter(t, p.NetFlowAddr, simulate.ProtocolIPFIX, 7)

	var want typeTotals
	want.add(exp.send(3000)) // the first datagram carries the templates
	p.WaitMetric("flowaudit_ingest_produced_flows_total", 3000, 30*time.Second)

	// Graceful stop and restart: exact counts.
	p.Stop()
	p.Start()
	want.add(exp.send(3000)) // data sets only: no template resent
	p.WaitMetric("flowaudit_ingest_produced_flows_total", 3000, 30*time.Second)
	if got := p.Metric("flowaudit_ingest_decode_errors_total"); got != 0 {
		t.Fatalf("restarted collector had %v decode errors: templates were not reloaded", got)
	}
	if got := waitFlows(t, ch, want.Flows, 60*time.Second); got != want.Flows {
		t.Fatalf("after graceful restart: rows = %d, want %d", got, want.Flows)
	}
	if diff := cmp.Diff(flowTotals(t, ch)["ipfix"], want); diff != "" {
		t.Errorf("after graceful restart (-got +want):\n%s", diff)
	}

	// SIGKILL as soon as the broker accepted the flows, likely before the
	// sink inserted them: they must still arrive, exactly once.
	want.add(exp.send(6000))
	p.WaitMetric("flowaudit_ingest_produced_flows_total", 9000, 30*time.Second)
	p.Kill()
	p.Start()
	want.add(exp.send(1500))
	p.WaitMetric("flowaudit_ingest_produced_flows_total", 1500, 30*time.Second)
	waitFlows(t, ch, want.Flows, 60*time.Second)
	// Let duplicates, if any, land too: the sink has caught up when its
	// lag and pending rows are 0.
	p.waitSinkDrained(30 * time.Second)
	got := ch.QueryUint64(t, countFlows)
	if got != want.Flows {
		t.Fatalf("after kill -9: rows = %d, want exactly %d", got, want.Flows)
	}
	if diff := cmp.Diff(flowTotals(t, ch)["ipfix"], want); diff != "" {
		t.Errorf("after kill -9 restart (-got +want):\n%s", diff)
	}
	if d := p.Metric("flowaudit_ingest_decode_errors_total"); d != 0 {
		t.Errorf("decode errors after kill -9 restart = %v, want 0", d)
	}
}

// TestClickHouseOutage stops ClickHouse for 10 s while flows arrive; every
// flow must arrive once it is back.
func TestClickHouseOutage(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{})
	p.Start()

	type result struct {
		tot simulate.Totals
		err error
	}
	res := make(chan result, 1)
	go func() {
		tot, err := simulate.Run(context.Background(), simulate.Config{
			Target: p.NetFlowAddr, Protocol: simulate.ProtocolNetFlowV9, Rate: 3000, Duration: 16 * time.Second, Seed: 3,
		})
		res <- result{tot, err}
	}()
	time.Sleep(3 * time.Second)
	ch.Stop(t)
	time.Sleep(10 * time.Second)
	ch.Start(t)
	r := <-res
	if r.err != nil {
		t.Fatalf("simulate: %v", r.err)
	}
	if got := waitFlows(t, ch, r.tot.Flows, 90*time.Second); got != r.tot.Flows {
		t.Fatalf("rows = %d, want %d", got, r.tot.Flows)
	}
	var want typeTotals
	want.add(r.tot)
	if diff := cmp.Diff(flowTotals(t, ch)["netflow_v9"], want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	if p.Metric("flowaudit_sink_clickhouse_errors_total") == 0 {
		t.Error("no failed ClickHouse call was counted: the outage did not hit the sink")
	}
}

// TestBadInput sends malformed datagrams of several kinds between good
// ones: each is counted under its reason and the good flows all arrive.
func TestBadInput(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{})
	p.Start()

	send := func(addr string, b []byte) {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 300)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	random[0], random[1] = 0x42, 0x42 // not a NetFlow version
	// A valid IPFIX datagram cut inside its template set, so no record in
	// it is complete. (Complete records before a cut are decoded and kept.)
	enc := simulate.NewEncoder(simulate.ProtocolIPFIX, simulate.EncoderOptions{})
	gen := simulate.NewGenerator(5)
	flows := make([]schemas.Flow, 10)
	for i := range flows {
		gen.Next(&flows[i])
	}
	valid := enc.Encode(nil, flows)
	truncated := append([]byte(nil), valid[:30]...)
	// An IPFIX data set for template 999 that no one announced.
	unknown := []byte{0, 10, 0, 24, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 0x03, 0xe7, 0, 8, 1, 2, 3, 4}
	wrongVersion := []byte{0, 7, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}

	good := newExporter(t, p.NetFlowAddr, simulate.ProtocolIPFIX, 11)
	var want typeTotals
	want.add(good.send(600))
	// Decode errors are counted under the exporter's own label only once
	// it sent valid data (exporter="other" before).
	p.WaitMetric("flowaudit_ingest_produced_flows_total", 600, 30*time.Second)
	for _, b := range [][]byte{random, truncated, unknown, wrongVersion} {
		send(p.NetFlowAddr, b)
	}
	send(p.SFlowAddr, random)
	send(p.SFlowAddr, []byte{0, 0, 0, 5, 0, 0})
	want.add(good.send(600))

	p.WaitMetric("flowaudit_ingest_dead_letters_total", 6, 30*time.Second)
	if got := waitFlows(t, ch, want.Flows, 60*time.Second); got != want.Flows {
		t.Fatalf("good rows = %d, want %d", got, want.Flows)
	}
	if diff := cmp.Diff(flowTotals(t, ch)["ipfix"], want); diff != "" {
		t.Errorf("good flows (-got +want):\n%s", diff)
	}
	for reason, min := range map[string]float64{"bad_version": 3, "truncated": 1, "unknown_template": 1} {
		if got := p.Metric(fmt.Sprintf(`flowaudit_ingest_decode_errors_total{exporter="127.0.0.1",reason=%q}`, reason)); got < min {
			t.Errorf("decode errors with reason %s = %v, want >= %v", reason, got, min)
		}
	}
	if got := p.Metric("flowaudit_ingest_decode_errors_total"); got < 6 {
		t.Errorf("decode errors = %v, want >= 6", got)
	}
}
