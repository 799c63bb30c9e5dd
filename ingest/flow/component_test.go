package flow_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/flowaudit/flowaudit/ingest/flow"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
	"github.com/flowaudit/flowaudit/schemas/pb"
)

// typeTotals is what arrived on the flows topic for one flow type.
type typeTotals struct {
	Records, Flows, Bytes, Packets uint64
}

func TestCollectorProducesFlowsAndDeadLetters(t *testing.T) {
	kcfg := kafka.DefaultConfiguration()
	flowsTopic, deadTopic := kcfg.Topic(kafka.TopicFlows), kcfg.Topic(kafka.TopicDeadLetter)
	_, addr := testutil.StartBroker(t, 1, flowsTopic, deadTopic)
	kcfg.Brokers = []string{addr}

	cfg := flow.DefaultConfiguration()
	cfg.Listen = []string{"netflow://127.0.0.1:0", "sflow://127.0.0.1:0"}
	cfg.Readers = 2
	dataDir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := flow.New(reporter.New(logger), cfg, flow.Dependencies{Kafka: kcfg, DataDir: dataDir})
	if err != nil {
		t.Fatalf("flow.New: %v", err)
	}
	if err := c.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})
	addrs := c.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("Addrs() = %v, want 2 listeners", addrs)
	}
	for i, a := range addrs {
		if _, port, _ := net.SplitHostPort(a); port == "0" || !strings.HasPrefix(a, "127.0.0.1:") {
			t.Fatalf("Addrs()[%d] = %q, want 127.0.0.1 and the bound port", i, a)
		}
	}

	// Send what the simulator says it sent, protocol by protocol, so
	// the expected totals are exact.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runs := []struct {
		protocol simulate.Protocol
		target   string
		count    int
		flowType schemas.FlowType
	}{
		{simulate.ProtocolIPFIX, addrs[0], 300, schemas.FlowTypeIPFIX},
		{simulate.ProtocolNetFlowV5, addrs[0], 95, schemas.FlowTypeNetFlowV5},
		{simulate.ProtocolSFlow, addrs[1], 64, schemas.FlowTypeSFlow},
	}
	want := map[schemas.FlowType]typeTotals{}
	var wantFlows uint64
	for i, r := range runs {
		tot, err := simulate.Run(ctx, simulate.Config{Target: r.target, Protocol: r.protocol, Count: r.count, Seed: int64(i + 1)})
		if err != nil {
			t.Fatalf("simulate %s: %v", r.protocol, err)
		}
		if tot.Flows != uint64(r.count) {
			t.Fatalf("simulate %s sent %d flows, want %d", r.protocol, tot.Flows, r.count)
		}
		want[r.flowType] = typeTotals{Records: tot.Datagrams, Flows: tot.Flows, Bytes: tot.Bytes, Packets: tot.Packets}
		wantFlows += tot.Flows
	}

	// Junk on the NetFlow port: version 0x6a75 ("ju") is no NetFlow.
	junk := []byte("junk, not a flow datagram")
	conn, err := net.Dial("udp", addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(junk); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumeTopics(flowsTopic, deadTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()

	exporter := schemas.AddrFrom4([4]byte{127, 0, 0, 1})
	got := map[schemas.FlowType]typeTotals{}
	var gotFlows uint64
	var deadLetters []*pb.DeadLetter
	deadline := time.Now().Add(30 * time.Second)
	for (gotFlows < wantFlows || len(deadLetters) == 0) && time.Now().Before(deadline) {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		fetches := consumer.PollFetches(pctx)
		pcancel()
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				t.Fatalf("consuming %s/%d: %v", fe.Topic, fe.Partition, fe.Err)
			}
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			switch rec.Topic {
			case flowsTopic:
				if !bytes.Equal(rec.Key, exporter[:]) {
					t.Errorf("flows record key = %x, want the 16-byte exporter %x", rec.Key, exporter[:])
				}
				var b schemas.FlowBatch
				if err := schemas.UnmarshalFlowBatch(rec.Value, &b); err != nil {
					t.Fatalf("UnmarshalFlowBatch: %v", err)
				}
				if b.Exporter != exporter {
					t.Errorf("batch exporter = %s, want %s", b.Exporter, exporter)
				}
				if b.TimeReceived == 0 {
					t.Errorf("batch TimeReceived is 0")
				}
				tt := got[b.Type]
				tt.Records++
				tt.Flows += uint64(len(b.Flows))
				for _, f := range b.Flows {
					tt.Bytes += f.Bytes
					tt.Packets += f.Packets
				}
				got[b.Type] = tt
				gotFlows += uint64(len(b.Flows))
			case deadTopic:
				var dl pb.DeadLetter
				if err := proto.Unmarshal(rec.Value, &dl); err != nil {
					t.Fatalf("dead letter is not a pb.DeadLetter: %v", err)
				}
				deadLetters = append(deadLetters, &dl)
			}
		})
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("flows topic per type (-got +want):\n%s", diff)
	}

	if len(deadLetters) != 1 {
		t.Fatalf("got %d dead letters, want 1 for the junk datagram", len(deadLetters))
	}
	dl := deadLetters[0]
	if dl.Reason != "bad_version" {
		t.Errorf("dead letter reason = %q, want bad_version", dl.Reason)
	}
	if dl.Stage != "ingest.flows" {
		t.Errorf("dead letter stage = %q, want ingest.flows", dl.Stage)
	}
	if !bytes.Equal(dl.Payload, junk) {
		t.Errorf("dead letter payload = %q, want %q", dl.Payload, junk)
	}
	if !strings.Contains(dl.Source, "netflow://") || !strings.Contains(dl.Source, "127.0.0.1") {
		t.Errorf("dead letter source = %q, want the listener and the exporter", dl.Source)
	}
	if dl.Error == "" || dl.Time == 0 {
		t.Errorf("dead letter error = %q, time = %d; want both set", dl.Error, dl.Time)
	}

	// The producer's acknowledgements may trail what the consumer saw by
	// a promise callback.
	for time.Now().Before(deadline) && c.Accepted() < wantFlows {
		time.Sleep(10 * time.Millisecond)
	}
	if got := c.Accepted(); got != wantFlows {
		t.Errorf("Accepted() = %d, want %d flows sent", got, wantFlows)
	}

	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	// IPFIX templates survive a restart.
	data, err := os.ReadFile(filepath.Join(dataDir, "templates", "templates.json"))
	if err != nil {
		t.Fatalf("template file after Stop: %v", err)
	}
	if !bytes.Contains(data, []byte("127.0.0.1")) {
		t.Errorf("template file does not name the exporter 127.0.0.1:\n%s", data)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestCollectorStartFailsOnBusyPort(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	kcfg := kafka.DefaultConfiguration()
	_, addr := testutil.StartBroker(t, 1)
	kcfg.Brokers = []string{addr}
	cfg := flow.DefaultConfiguration()
	cfg.Listen = []string{"netflow://127.0.0.1:0", "sflow://" + busy.LocalAddr().String()}
	cfg.Readers = 1
	r := reporter.New(slog.New(slog.DiscardHandler))
	c, err := flow.New(r, cfg, flow.Dependencies{Kafka: kcfg})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start()
	if err == nil {
		_ = c.Stop()
		t.Fatal("Start on a port held without SO_REUSEPORT succeeded, want an error")
	}
	for _, w := range []string{"ingest.flows.listen", "sflow://" + busy.LocalAddr().String()} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Start error %q, want it to contain %q", err, w)
		}
	}
	if nr := r.NotReady(); len(nr) != 1 || !strings.HasPrefix(nr[0], "ingest.flows:") {
		t.Errorf("NotReady() = %q, want the collector still not ready", nr)
	}
	// The listener opened before the failure is closed again: a socket
	// without SO_REUSEPORT can take its port.
	addrs := c.Addrs()
	if len(addrs) != 1 {
		t.Fatalf("Addrs() after the failed Start = %v, want the one listener opened", addrs)
	}
	plain, err := net.ListenPacket("udp", addrs[0])
	if err != nil {
		t.Errorf("port %s still held after the failed Start: %v", addrs[0], err)
	} else {
		plain.Close()
	}
}

// TestCollectorCountsClampedTimes: a flow dated two days before its
// export (beyond max_time_skew) arrives clamped and is counted per
// exporter and reason.
func TestCollectorCountsClampedTimes(t *testing.T) {
	kcfg := kafka.DefaultConfiguration()
	flowsTopic := kcfg.Topic(kafka.TopicFlows)
	_, addr := testutil.StartBroker(t, 1, flowsTopic, kcfg.Topic(kafka.TopicDeadLetter))
	kcfg.Brokers = []string{addr}
	cfg := flow.DefaultConfiguration()
	cfg.Listen = []string{"netflow://127.0.0.1:0"}
	cfg.Readers = 1
	cfg.MaxTimeSkew = time.Hour
	r := reporter.New(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	c, err := flow.New(r, cfg, flow.Dependencies{Kafka: kcfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })

	// IPFIX: template 256 = flowStartSeconds, flowEndSeconds; one record.
	export := uint32(time.Now().Unix())
	be := binary.BigEndian
	tmpl := be.AppendUint16(be.AppendUint16(nil, 2), 16)
	tmpl = append(tmpl, 1, 0, 0, 2, 0, 150, 0, 4, 0, 151, 0, 4)
	data := be.AppendUint16(be.AppendUint16(nil, 256), 12)
	data = be.AppendUint32(be.AppendUint32(data, export-2*86400), export-10)
	msg := be.AppendUint16(be.AppendUint16(nil, 10), uint16(16+len(tmpl)+len(data)))
	msg = be.AppendUint32(be.AppendUint32(be.AppendUint32(msg, export), 0), 0)
	msg = append(append(msg, tmpl...), data...)
	conn, err := net.Dial("udp", c.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(flowsTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b schemas.FlowBatch
	for len(b.Flows) == 0 {
		fetches := consumer.PollFetches(ctx)
		if err := fetches.Err0(); err != nil {
			t.Fatalf("consuming: %v", err)
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			if err := schemas.UnmarshalFlowBatch(rec.Value, &b); err != nil {
				t.Fatal(err)
			}
		})
	}
	wantStart := uint64(export)*1e9 - uint64(time.Hour)
	if len(b.Flows) != 1 || b.Flows[0].TimeStart != wantStart || b.Flows[0].TimeEnd != uint64(export-10)*1e9 {
		t.Fatalf("flows %+v, want one from %d (clamped) to %d", b.Flows, wantStart, uint64(export-10)*1e9)
	}
	if got := clampedCount(t, r, "127.0.0.1", "past"); got != 1 {
		t.Errorf("flowaudit_ingest_flow_times_clamped_total{exporter=127.0.0.1,reason=past} = %v, want 1", got)
	}
}

// clampedCount reads the clamp counter's sample from r's registry.
func clampedCount(t *testing.T, r *reporter.Reporter, exporter, reason string) float64 {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "flowaudit_ingest_flow_times_clamped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["exporter"] == exporter && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no flowaudit_ingest_flow_times_clamped_total{exporter=%q,reason=%q}", exporter, reason)
	return 0
}
