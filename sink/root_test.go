package sink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

func TestDefaultConfiguration(t *testing.T) {
	cfg := DefaultConfiguration()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.BatchRows != 100_000 || cfg.BatchInterval != time.Second {
		t.Errorf("batch = %d rows / %s, want 100000 rows / 1s (DESIGN.md)", cfg.BatchRows, cfg.BatchInterval)
	}
	bad := cfg
	bad.BatchRows = 0
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "sink.batch_rows") {
		t.Errorf("Validate(batch_rows=0) = %v, want an error naming sink.batch_rows", err)
	}
}

// testBatch returns a batch of n flows whose bytes are 1..n and packets 1.
func testBatch(n int, exporter string) *schemas.FlowBatch {
	b := &schemas.FlowBatch{
		TimeReceived: uint64(time.Now().UnixNano()),
		Exporter:     schemas.AddrFromNetip(netip.MustParseAddr(exporter)),
		Type:         schemas.FlowTypeIPFIX,
	}
	for i := 0; i < n; i++ {
		b.Flows = append(b.Flows, schemas.Flow{
			SrcAddr: schemas.AddrFromNetip(netip.MustParseAddr("10.1.0.1")),
			DstAddr: schemas.AddrFromNetip(netip.MustParseAddr("2001:db8::1")),
			Bytes:   uint64(i + 1), Packets: 1, Proto: 6, SrcPort: 40000, DstPort: 443, SamplingRate: 1,
		})
	}
	return b
}

type sinkEnv struct {
	ch     *testutil.ClickHouseServer
	kcfg   kafka.Configuration
	chcfg  clickhousedb.Configuration
	client *kgo.Client
}

func newSinkEnv(t *testing.T) *sinkEnv {
	ch := testutil.StartClickHouse(t)
	kcfg := kafka.DefaultConfiguration()
	kcfg.Partitions = 2
	_, addr := testutil.StartBroker(t, 2, kcfg.Topic(kafka.TopicFlows), kcfg.Topic(kafka.TopicAccess), kcfg.Topic(kafka.TopicAlerts))
	kcfg.Brokers = []string{addr}
	chcfg := clickhousedb.DefaultConfiguration()
	chcfg.Addr = ch.Addr
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(kcfg.Topic(kafka.TopicFlows)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &sinkEnv{ch: ch, kcfg: kcfg, chcfg: chcfg, client: cl}
}

func (e *sinkEnv) produce(t *testing.T, records, flowsPer int) {
	t.Helper()
	for i := 0; i < records; i++ {
		b := testBatch(flowsPer, "192.0.2.1")
		rec := &kgo.Record{Key: []byte{byte(i)}, Value: schemas.AppendFlowBatch(nil, b)}
		if err := e.client.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *sinkEnv) newSink(t *testing.T, cfg Configuration) *Component {
	t.Helper()
	r := reporter.New(slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	c, err := New(r, cfg, Dependencies{Kafka: e.kcfg, ClickHouse: e.chcfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

func waitRows(t *testing.T, ch *testutil.ClickHouseServer, want uint64) uint64 {
	t.Helper()
	var got uint64
	conn := ch.Conn(t)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		// Errors are expected until the sink has migrated the schema.
		if err := conn.QueryRow(context.Background(), "SELECT toUInt64(count()) FROM flowaudit.flows").Scan(&got); err == nil && got >= want {
			break
		}
	}
	return got
}

// TestSinkInsertsThenCommits checks rows land exactly once, byte sums
// match, and Kafka's committed offsets and ClickHouse's offset record both
// point past the consumed records.
func TestSinkInsertsThenCommits(t *testing.T) {
	e := newSinkEnv(t)
	e.produce(t, 50, 20)
	cfg := DefaultConfiguration()
	cfg.FlowsFrom = "flows" // these tests produce collector output directly
	cfg.BatchInterval = 100 * time.Millisecond
	s := e.newSink(t, cfg)
	if got := waitRows(t, e.ch, 1000); got != 1000 {
		t.Fatalf("rows = %d, want 1000", got)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := e.ch.QueryUint64(t, "SELECT toUInt64(sum(bytes)) FROM flowaudit.flows"), uint64(50*210); got != want {
		t.Errorf("sum(bytes) = %d, want %d", got, want)
	}
	if got := e.ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE IPv6NumToString(dst_addr) = '2001:db8::1' AND IPv6NumToString(src_addr) = '::ffff:10.1.0.1'"); got != 1000 {
		t.Errorf("rows with the right addresses = %d, want 1000", got)
	}
	adm := kadm.NewClient(e.client)
	offs, err := adm.FetchOffsets(context.Background(), cfg.ConsumerGroup)
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	offs.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed != 50 {
		t.Errorf("committed offsets sum = %d, want 50", committed)
	}
	if got := e.ch.QueryUint64(t, "SELECT toUInt64(sum(o)) FROM (SELECT partition, max(next_offset) AS o FROM flowaudit.kafka_offsets GROUP BY partition)"); got != 50 {
		t.Errorf("ClickHouse offset record sum = %d, want 50", got)
	}
	// A second sink in the same group starts after the committed offsets:
	// nothing is inserted twice.
	e.produce(t, 5, 20)
	s2 := e.newSink(t, cfg)
	if got := waitRows(t, e.ch, 1100); got != 1100 {
		t.Errorf("rows after restart = %d, want 1100", got)
	}
	time.Sleep(500 * time.Millisecond)
	if got := e.ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows"); got != 1100 {
		t.Errorf("rows after settling = %d, want 1100", got)
	}
	if err := s2.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSinkResumesFromClickHouseOffsets simulates a sink that inserted and
// recorded its offsets in ClickHouse but died before committing to Kafka:
// the next sink must not insert those records again.
func TestSinkResumesFromClickHouseOffsets(t *testing.T) {
	e := newSinkEnv(t)
	// Key 0 records: put everything on one partition to know the offsets.
	for i := 0; i < 10; i++ {
		rec := &kgo.Record{Partition: 0, Value: schemas.AppendFlowBatch(nil, testBatch(10, "192.0.2.1"))}
		cl := e.client
		if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	conn := e.ch.Conn(t)
	if _, err := Migrate(context.Background(), conn, "flowaudit", 0, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfiguration()
	cfg.FlowsFrom = "flows" // these tests produce collector output directly
	cfg.BatchInterval = 100 * time.Millisecond
	topic := e.kcfg.Topic(kafka.TopicFlows)
	var p0 int32 = -1
	// Find which partition holds the records.
	adm := kadm.NewClient(e.client)
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset == 10 {
			p0 = o.Partition
		}
	})
	if p0 < 0 {
		t.Fatalf("no partition with 10 records: %v", ends)
	}
	// "Already inserted" the first 6 records (60 rows), recorded offset 6.
	ob, err := conn.PrepareBatch(context.Background(), "INSERT INTO flowaudit.kafka_offsets (consumer_group, topic, partition, next_offset)")
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Append(cfg.ConsumerGroup, topic, uint32(p0), int64(6)); err != nil {
		t.Fatal(err)
	}
	if err := ob.Send(); err != nil {
		t.Fatal(err)
	}
	s := e.newSink(t, cfg)
	if got := waitRows(t, e.ch, 40); got != 40 {
		t.Fatalf("rows = %d, want 40 (records 6-9 only)", got)
	}
	time.Sleep(500 * time.Millisecond)
	if got := e.ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows"); got != 40 {
		t.Errorf("rows after settling = %d, want 40", got)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSinkInsert measures insert rows/s into a real ClickHouse.
func BenchmarkSinkInsert(b *testing.B) {
	ch := testutil.StartClickHouse(b)
	conn := ch.Conn(b)
	v, err := Migrate(context.Background(), conn, "flowaudit", 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	chcfg := clickhousedb.DefaultConfiguration()
	chcfg.Addr = ch.Addr
	w := &flowWriter{name: "flows"}
	w.modern = v.Modern()
	const rows = 100_000
	batch := testBatch(rows, "192.0.2.1")
	pr := w.partition(0, 0)
	for i := range batch.Flows {
		pr.appendRow(flowRow{received: batch.TimeReceived, exporter: batch.Exporter, typ: batch.Type, flow: batch.Flows[i]})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := w.insert(context.Background(), conn, chcfg.Database); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}

// testWriter sends component logs to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestSinkAccessEvents checks access events land in access_events with
// their values, beside flows, from one consumer group.
func TestSinkAccessEvents(t *testing.T) {
	e := newSinkEnv(t)
	e.produce(t, 3, 5)
	when := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	for i, ev := range []schemas.AccessEvent{
		{Time: uint64(when.UnixNano()), Received: uint64(when.Add(time.Second).UnixNano()), Source: "sshd", Host: "web-1", User: "alice",
			SrcAddr: schemas.AddrFromNetip(netip.MustParseAddr("10.1.2.3")), SrcPort: 52222, Action: schemas.ActionLogin,
			Outcome: schemas.OutcomeSuccess, AuthMethod: "publickey",
			PeerAddr: schemas.AddrFromNetip(netip.MustParseAddr("192.0.2.7")), Listener: "udp://0.0.0.0:5514", Untrusted: true},
		{Time: uint64(when.UnixNano()), Source: "nginx", User: "bob", SrcAddr: schemas.AddrFromNetip(netip.MustParseAddr("2001:db8::9")),
			Resource: "/admin", Action: "GET", Outcome: schemas.OutcomeDenied, Status: 403, UserAgent: "curl/8",
			ForwardedFor: "2001:db8::9, 10.0.0.1",
			Binding:      schemas.BindingStop, Device: "52:54:00:12:34:56", DeviceName: "bob-pc", Expires: uint64(when.Add(time.Hour).UnixNano()),
			OuterAddr: schemas.AddrFromNetip(netip.MustParseAddr("198.51.100.4")), Labels: "app=web"},
	} {
		rec := &kgo.Record{Topic: e.kcfg.Topic(kafka.TopicAccess), Key: []byte{byte(i)}, Value: schemas.AppendAccessEvent(nil, &ev)}
		if err := e.client.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfiguration()
	cfg.FlowsFrom = "flows" // these tests produce collector output directly
	cfg.BatchInterval = 100 * time.Millisecond
	s := e.newSink(t, cfg)
	defer s.Stop()
	if got := waitRows(t, e.ch, 15); got != 15 {
		t.Fatalf("flow rows = %d, want 15", got)
	}
	conn := e.ch.Conn(t)
	var n uint64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && n < 2; time.Sleep(100 * time.Millisecond) {
		_ = conn.QueryRow(context.Background(), "SELECT toUInt64(count()) FROM flowaudit.access_events").Scan(&n)
	}
	if n != 2 {
		t.Fatalf("access_events rows = %d, want 2", n)
	}
	type row struct {
		Source, User, Src, Action, Outcome, Resource, Method, UA, XFF string
		Port, Status                                                  uint16
		Time                                                          time.Time
		Peer, Listener                                                string
		Trusted                                                       uint8
	}
	rows, err := conn.Query(context.Background(), "SELECT source, user, IPv6NumToString(src_addr), action, outcome, resource, auth_method, user_agent, forwarded_for, src_port, status, time, IPv6NumToString(peer_addr), listener, trusted FROM flowaudit.access_events ORDER BY source DESC")
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.Source, &r.User, &r.Src, &r.Action, &r.Outcome, &r.Resource, &r.Method, &r.UA, &r.XFF, &r.Port, &r.Status, &r.Time, &r.Peer, &r.Listener, &r.Trusted); err != nil {
			t.Fatal(err)
		}
		r.Time = r.Time.UTC()
		got = append(got, r)
	}
	rows.Close()
	want := []row{
		{Source: "sshd", User: "alice", Src: "::ffff:10.1.2.3", Action: "login", Outcome: "success", Method: "publickey", Port: 52222, Time: when,
			Peer: "::ffff:192.0.2.7", Listener: "udp://0.0.0.0:5514", Trusted: 0},
		{Source: "nginx", User: "bob", Src: "2001:db8::9", Action: "GET", Outcome: "denied", Resource: "/admin", UA: "curl/8", XFF: "2001:db8::9, 10.0.0.1", Status: 403, Time: when,
			Peer: "::", Trusted: 1},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("access_events (-got +want):\n%s", diff)
	}
	// The identity-source fields, on 18.16's types.
	var ids []string
	rows, err = conn.Query(context.Background(), "SELECT concat(source, '|', binding, '|', device, '|', device_name, '|', toString(toUInt32(expires)), '|', IPv6NumToString(outer_addr), '|', labels) FROM flowaudit.access_events ORDER BY source DESC")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, v)
	}
	rows.Close()
	wantIDs := []string{"sshd||||0|::|", fmt.Sprintf("nginx|stop|52:54:00:12:34:56|bob-pc|%d|::ffff:198.51.100.4|app=web", when.Add(time.Hour).Unix())}
	if diff := cmp.Diff(ids, wantIDs); diff != "" {
		t.Errorf("access_events identity-source columns (-got +want):\n%s", diff)
	}
}

// TestSinkAlertsDeduplicate writes an alert, its update and a replay of
// both: the alerts table holds one row per alert_id, with final counts.
func TestSinkAlertsDeduplicate(t *testing.T) {
	e := newSinkEnv(t)
	first := schemas.Alert{ID: "a1", Time: 1_800_000_000_000_000_000, Kind: schemas.AlertPortScan, Severity: schemas.SeverityMedium,
		SrcAddr: schemas.AddrFromNetip(netip.MustParseAddr("10.1.0.5")), DstPort: 0, Count: 15,
		FirstSeen: 1_800_000_000_000_000_000, LastSeen: 1_800_000_010_000_000_000, Summary: "scan", Evidence: "{}"}
	update := first
	update.Count, update.LastSeen, update.Update = 22, 1_800_000_050_000_000_000, true
	other := first
	other.ID, other.Kind = "b2", schemas.AlertAddressScan
	for _, a := range []schemas.Alert{first, update, other, first, update} {
		rec := &kgo.Record{Topic: e.kcfg.Topic(kafka.TopicAlerts), Key: []byte(a.ID), Value: schemas.AppendAlert(nil, &a)}
		if err := e.client.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfiguration()
	cfg.BatchInterval = 100 * time.Millisecond
	s := e.newSink(t, cfg)
	defer s.Stop()
	conn := e.ch.Conn(t)
	var rows uint64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && rows < 5; time.Sleep(100 * time.Millisecond) {
		_ = conn.QueryRow(context.Background(), "SELECT toUInt64(count()) FROM flowaudit.alerts").Scan(&rows)
	}
	if rows != 5 {
		t.Fatalf("alert rows written = %d, want 5", rows)
	}
	var n, count uint64
	if err := conn.QueryRow(context.Background(), "SELECT toUInt64(count()), toUInt64(sum(count)) FROM flowaudit.alerts FINAL").Scan(&n, &count); err != nil {
		t.Fatal(err)
	}
	if n != 2 || count != 22+15 {
		t.Errorf("alerts FINAL: %d rows with count sum %d; want 2 rows, 37 (a1 updated to 22, b2 15)", n, count)
	}
}

// TestSinkFirewallAndXlateColumns: fw_action and the post-NAT columns
// land as sent, and a flow with only an end time is dated by it
// (schemas.FlowSpan), not by its arrival.
func TestSinkFirewallAndXlateColumns(t *testing.T) {
	e := newSinkEnv(t)
	end := time.Date(2026, 11, 23, 8, 0, 5, 0, time.UTC)
	b := testBatch(2, "192.0.2.1")
	b.Flows[0].FwAction = schemas.FwActionDenied
	b.Flows[0].SrcAddrXlate = schemas.AddrFromNetip(netip.MustParseAddr("198.51.100.7"))
	b.Flows[0].DstAddrXlate = schemas.AddrFromNetip(netip.MustParseAddr("2001:db8::77"))
	b.Flows[0].SrcPortXlate, b.Flows[0].DstPortXlate = 61000, 8443
	b.Flows[0].TimeEnd = uint64(end.UnixNano())
	b.Flows[1].FwAction = schemas.FwActionForwarded
	rec := &kgo.Record{Key: []byte{0}, Value: schemas.AppendFlowBatch(nil, b)}
	if err := e.client.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfiguration()
	cfg.FlowsFrom = "flows"
	cfg.BatchInterval = 100 * time.Millisecond
	s := e.newSink(t, cfg)
	if got := waitRows(t, e.ch, 2); got != 2 {
		t.Fatalf("rows = %d, want 2", got)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	type row struct {
		Bytes              uint64
		Action, SrcX, DstX string
		SrcPortX, DstPortX uint16
		Start, End         int64
	}
	rows, err := e.ch.Conn(t).Query(context.Background(), `SELECT bytes, fw_action, IPv6NumToString(src_addr_xlate), IPv6NumToString(dst_addr_xlate),
		src_port_xlate, dst_port_xlate, toInt64(toDateTime(time_start)), toInt64(toDateTime(time_end)) FROM flowaudit.flows ORDER BY bytes`)
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.Bytes, &r.Action, &r.SrcX, &r.DstX, &r.SrcPortX, &r.DstPortX, &r.Start, &r.End); err != nil {
			t.Fatal(err)
		}
		if r.Bytes == 2 {
			r.Start, r.End = 0, 0 // dated by arrival
		}
		got = append(got, r)
	}
	rows.Close()
	want := []row{
		{Bytes: 1, Action: "denied", SrcX: "::ffff:198.51.100.7", DstX: "2001:db8::77", SrcPortX: 61000, DstPortX: 8443, Start: end.Unix(), End: end.Unix()},
		{Bytes: 2, Action: "forwarded", SrcX: "::", DstX: "::"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("flows (-got +want):\n%s", diff)
	}
}
