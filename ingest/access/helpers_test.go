package access_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/flowaudit/flowaudit/ingest/access"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
	"github.com/flowaudit/flowaudit/schemas/pb"
)

// harness runs a broker, one collector at a time and a consumer of the
// access and dead-letter topics.
type harness struct {
	t        *testing.T
	kcfg     kafka.Configuration
	dataDir  string
	stdin    io.Reader // Dependencies.Stdin
	c        *access.Component
	r        *reporter.Reporter
	consumer *kgo.Client

	events []schemas.AccessEvent
	keys   [][]byte
	dead   []*pb.DeadLetter
}

// testConfiguration listens on loopback with kernel-chosen ports.
func testConfiguration() access.Configuration {
	cfg := access.DefaultConfiguration()
	cfg.SyslogListen = []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0"}
	cfg.HTTPListen = "127.0.0.1:0"
	return cfg
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	kcfg := kafka.DefaultConfiguration()
	accessTopic, deadTopic := kcfg.Topic(kafka.TopicAccess), kcfg.Topic(kafka.TopicDeadLetter)
	_, addr := testutil.StartBroker(t, 1, accessTopic, deadTopic)
	kcfg.Brokers = []string{addr}
	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ConsumeTopics(accessTopic, deadTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(consumer.Close)
	return &harness{t: t, kcfg: kcfg, dataDir: t.TempDir(), consumer: consumer}
}

// start creates and starts a collector with cfg; the previous one must
// be stopped.
func (h *harness) start(cfg access.Configuration) *access.Component {
	h.t.Helper()
	logger := slog.New(slog.NewTextHandler(h.t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	h.r = reporter.New(logger)
	c, err := access.New(h.r, cfg, access.Dependencies{Kafka: h.kcfg, DataDir: h.dataDir, Stdin: h.stdin})
	if err != nil {
		h.t.Fatalf("access.New: %v", err)
	}
	if err := c.Start(); err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	h.c = c
	h.t.Cleanup(func() { _ = c.Stop() })
	return c
}

func (h *harness) stop() {
	h.t.Helper()
	if err := h.c.Stop(); err != nil {
		h.t.Fatalf("Stop: %v", err)
	}
}

// poll consumes for up to d and records what arrived.
func (h *harness) poll(d time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	fetches := h.consumer.PollFetches(ctx)
	for _, fe := range fetches.Errors() {
		if !errors.Is(fe.Err, context.DeadlineExceeded) {
			h.t.Fatalf("consuming %s/%d: %v", fe.Topic, fe.Partition, fe.Err)
		}
	}
	fetches.EachRecord(func(rec *kgo.Record) {
		if rec.Topic == h.kcfg.Topic(kafka.TopicDeadLetter) {
			var dl pb.DeadLetter
			if err := proto.Unmarshal(rec.Value, &dl); err != nil {
				h.t.Fatalf("dead letter is not a pb.DeadLetter: %v", err)
			}
			h.dead = append(h.dead, &dl)
			return
		}
		var ev schemas.AccessEvent
		if err := schemas.UnmarshalAccessEvent(rec.Value, &ev); err != nil {
			h.t.Fatalf("UnmarshalAccessEvent: %v", err)
		}
		h.events = append(h.events, ev)
		h.keys = append(h.keys, rec.Key)
	})
}

// wait consumes until at least events access events and dead dead
// letters arrived in total.
func (h *harness) wait(events, dead int) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(h.events) < events || len(h.dead) < dead {
		if time.Now().After(deadline) {
			h.t.Fatalf("after 20s: %d access events (want %d) and %d dead letters (want %d); users %v",
				len(h.events), events, len(h.dead), dead, users(h.events))
		}
		h.poll(500 * time.Millisecond)
	}
}

// settle consumes a little longer so that extra records would show.
func (h *harness) settle() {
	h.t.Helper()
	h.poll(700 * time.Millisecond)
}

// replaceFile replaces path with content s modified at mtime, in one
// rename, as a daemon rewriting its status or lease file does.
func replaceFile(t *testing.T, path, s string, mtime time.Time) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func users(evs []schemas.AccessEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.User
	}
	return out
}

func reasons(dls []*pb.DeadLetter) []string {
	out := make([]string, len(dls))
	for i, dl := range dls {
		out[i] = dl.Reason
	}
	return out
}

func addr(s string) schemas.Addr { return schemas.AddrFromNetip(netip.MustParseAddr(s)) }

// checkReceived checks that Received is recent, then clears it so that
// events compare exactly.
func checkReceived(t *testing.T, evs []schemas.AccessEvent) []schemas.AccessEvent {
	t.Helper()
	now := uint64(time.Now().UnixNano())
	out := make([]schemas.AccessEvent, len(evs))
	for i, ev := range evs {
		if ev.Received == 0 || ev.Received > now || now-ev.Received > uint64(time.Minute) {
			t.Errorf("event %d (%s): Received = %d, want within the last minute", i, ev.User, ev.Received)
		}
		ev.Received = 0
		out[i] = ev
	}
	return out
}

// metricValue returns the value of the counter or gauge name with
// exactly labels, 0 when absent.
func metricValue(t *testing.T, r *reporter.Reporter, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m, labels) {
				continue
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func labelsMatch(m *dto.Metric, labels map[string]string) bool {
	if len(m.GetLabel()) != len(labels) {
		return false
	}
	for _, lp := range m.GetLabel() {
		if labels[lp.GetName()] != lp.GetValue() {
			return false
		}
	}
	return true
}

// waitMetric waits until the metric reaches want (producer
// acknowledgements trail what the consumer sees).
func waitMetric(t *testing.T, r *reporter.Reporter, name string, labels map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := metricValue(t, r, name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
