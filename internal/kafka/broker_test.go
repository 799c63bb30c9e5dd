package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startBroker(t *testing.T, cfg Configuration, dataDir string) *Broker {
	t.Helper()
	b, err := NewBroker(testLogger(t), cfg, dataDir)
	if err != nil {
		t.Fatalf("NewBroker: %v", err)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return b
}

func TestBrokerPersistsRecordsAndOffsets(t *testing.T) {
	cfg := DefaultConfiguration()
	cfg.EmbeddedListen = freeTCPAddr(t)
	cfg.Partitions = 2
	dataDir := t.TempDir()
	topic := cfg.Topic(TopicFlows)
	const group = "flowaudit-sink"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	b := startBroker(t, cfg, dataDir)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = b.Stop()
		}
	})
	if diff := cmp.Diff(b.Addrs(), []string{cfg.EmbeddedListen}); diff != "" {
		t.Errorf("Addrs() (-got +want):\n%s", diff)
	}
	if err := EnsureTopics(ctx, cfg, testLogger(t), 10*time.Second, topic, cfg.Topic(TopicDeadLetter)); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	// A second call finds the topics and is not an error.
	if err := EnsureTopics(ctx, cfg, testLogger(t), 10*time.Second, topic); err != nil {
		t.Fatalf("EnsureTopics again: %v", err)
	}

	producer, err := kgo.NewClient(ClientOptions(cfg, "test-producer")...)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	var recs []*kgo.Record
	for i := range 100 {
		v := fmt.Sprintf("record-%03d", i)
		want = append(want, v)
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(i % 7)), Value: []byte(v)})
	}
	if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	producer.Close()

	// Commit, for partition 0, the offset after its last record.
	var p0 int64
	for _, r := range recs {
		if r.Partition == 0 {
			p0 = max(p0, r.Offset+1)
		}
	}
	if p0 == 0 {
		t.Fatal("no record landed on partition 0")
	}
	admCl, err := kgo.NewClient(kgo.SeedBrokers(cfg.EmbeddedListen))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(admCl)
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: p0, LeaderEpoch: -1})
	resp, err := adm.CommitOffsets(ctx, group, commit)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("committing offset %d for %s: %v", p0, group, err)
	}
	admCl.Close()

	stopped = true
	if err := b.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	// Same directory, same port: everything is still there.
	b2 := startBroker(t, cfg, dataDir)
	t.Cleanup(func() { _ = b2.Stop() })

	admCl2, err := kgo.NewClient(kgo.SeedBrokers(cfg.EmbeddedListen))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl2.Close()
	adm2 := kadm.NewClient(admCl2)
	details, err := adm2.ListTopics(ctx, topic)
	if err != nil {
		t.Fatalf("ListTopics after restart: %v", err)
	}
	if d, ok := details[topic]; !ok || d.Err != nil || len(d.Partitions) != int(cfg.Partitions) {
		t.Errorf("topic %s after restart: %+v, want %d partitions", topic, d, cfg.Partitions)
	}
	offsets, err := adm2.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("FetchOffsets after restart: %v", err)
	}
	if o, ok := offsets.Lookup(topic, 0); !ok || o.Err != nil || o.At != p0 {
		t.Errorf("committed offset of %s/0 after restart = %+v (found %v), want %d", topic, o, ok, p0)
	}

	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.EmbeddedListen),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var got []string
	for len(got) < len(want) && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		fetches := consumer.PollFetches(pctx)
		pcancel()
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				t.Fatalf("consuming after restart: %v", fe.Err)
			}
		}
		fetches.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	sort.Strings(got)
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("records after restart (-got +want):\n%s", diff)
	}
}

func TestBrokerPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := DefaultConfiguration()
	cfg.EmbeddedListen = busy.Addr().String()
	b, err := NewBroker(testLogger(t), cfg, t.TempDir())
	if err != nil {
		t.Fatalf("NewBroker: %v", err)
	}
	err = b.Start()
	if err == nil {
		_ = b.Stop()
		t.Fatal("Start on a port in use succeeded, want an error")
	}
	for _, w := range []string{"kafka.embedded_listen", busy.Addr().String()} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Start error %q, want it to contain %q", err, w)
		}
	}
	// Stop after a failed Start is harmless.
	if err := b.Stop(); err != nil {
		t.Errorf("Stop after a failed Start: %v", err)
	}
}

func TestBrokerBadListen(t *testing.T) {
	for _, listen := range []string{"127.0.0.1", "127.0.0.1:http-ish"} {
		cfg := DefaultConfiguration()
		cfg.EmbeddedListen = listen
		b, err := NewBroker(testLogger(t), cfg, t.TempDir())
		if err != nil {
			t.Fatalf("NewBroker: %v", err)
		}
		err = b.Start()
		if err == nil {
			_ = b.Stop()
			t.Fatalf("Start with embedded_listen %q succeeded, want an error", listen)
		}
		if !strings.Contains(err.Error(), "kafka.embedded_listen") {
			t.Errorf("Start with embedded_listen %q: error %q, want it to name kafka.embedded_listen", listen, err)
		}
	}
}

func TestEnsureTopicsTimesOutWithoutBroker(t *testing.T) {
	cfg := DefaultConfiguration()
	cfg.Brokers = []string{freeTCPAddr(t)} // nothing listens there
	err := EnsureTopics(context.Background(), cfg, testLogger(t), 700*time.Millisecond, cfg.Topic(TopicFlows))
	if err == nil {
		t.Fatal("EnsureTopics without a broker succeeded, want an error")
	}
	if !strings.Contains(err.Error(), cfg.Brokers[0]) {
		t.Errorf("EnsureTopics error %q, want it to name the broker %s", err, cfg.Brokers[0])
	}
}
