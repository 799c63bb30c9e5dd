package flow_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/ingest/flow"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/internal/testutil"
)

// counterSum sums a counter family's samples in r's registry.
func counterSum(t *testing.T, r *reporter.Reporter, name string) float64 {
	t.Helper()
	mfs, err := r.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestDeadLetterRate floods the collector with junk: every datagram is
// counted as a decode error, but only ingest.flows.dead_letter_rate per
// second (bursts of as many) are copied to the dead-letter topic; the
// rest are counted as dropped, so dead letters + dropped = junk sent.
func TestDeadLetterRate(t *testing.T) {
	kcfg := kafka.DefaultConfiguration()
	deadTopic := kcfg.Topic(kafka.TopicDeadLetter)
	_, addr := testutil.StartBroker(t, 1, kcfg.Topic(kafka.TopicFlows), deadTopic)
	kcfg.Brokers = []string{addr}
	cfg := flow.DefaultConfiguration()
	cfg.Listen = []string{"netflow://127.0.0.1:0"}
	cfg.Readers = 1
	cfg.DeadLetterRate = 20
	r := reporter.New(slog.New(slog.DiscardHandler))
	c, err := flow.New(r, cfg, flow.Dependencies{Kafka: kcfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	const junk = 2000
	conn, err := net.Dial("udp", c.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < junk; i++ {
		if _, err := conn.Write([]byte("junk, not a flow datagram")); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	var errs float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if errs = counterSum(t, r, "flowaudit_ingest_decode_errors_total"); errs == junk {
			break
		}
	}
	elapsed := time.Since(start)
	if errs != junk {
		t.Fatalf("decode errors = %v, want %d (every junk datagram counted)", errs, junk)
	}
	dropped := counterSum(t, r, "flowaudit_ingest_dead_letters_dropped_total")
	copied := junk - dropped
	if limit := float64(cfg.DeadLetterRate) * (1 + elapsed.Seconds()); copied < float64(cfg.DeadLetterRate) || copied > limit {
		t.Fatalf("%v junk datagrams copied to the dead-letter topic in %s, want between %d (the burst) and %.0f", copied, elapsed, cfg.DeadLetterRate, limit)
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(deadTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var got int
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for got < int(copied) && ctx.Err() == nil {
		got += consumer.PollFetches(ctx).NumRecords()
	}
	if got != int(copied) {
		t.Fatalf("dead-letter topic holds %d records, want %v (junk %d - dropped %v)", got, copied, junk, dropped)
	}
	var n float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n = counterSum(t, r, "flowaudit_ingest_dead_letters_total"); n == copied {
			break
		}
	}
	if n != copied {
		t.Errorf("flowaudit_ingest_dead_letters_total = %v, want %v", n, copied)
	}
	t.Logf("%d junk datagrams in %s: %v dead letters, %v dropped", junk, elapsed.Round(time.Millisecond), copied, dropped)
}
