package kafka

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestDefaultConfiguration(t *testing.T) {
	cfg := DefaultConfiguration()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() of the defaults: %v", err)
	}
	want := Configuration{
		EmbeddedListen:    "127.0.0.1:9092",
		TopicPrefix:       "flowaudit",
		Partitions:        4,
		ReplicationFactor: 1,
		ClientID:          "flowaudit",
		ProduceLinger:     5 * time.Millisecond,
		Retention:         24 * time.Hour,
		Compression:       "auto",
	}
	if diff := cmp.Diff(cfg, want); diff != "" {
		t.Errorf("DefaultConfiguration() (-got +want):\n%s", diff)
	}
	if !cfg.Embedded() {
		t.Error("Embedded() = false with no kafka.brokers, want true")
	}
	if diff := cmp.Diff(cfg.SeedBrokers(), []string{"127.0.0.1:9092"}); diff != "" {
		t.Errorf("SeedBrokers() (-got +want):\n%s", diff)
	}
}

func TestCompression(t *testing.T) {
	cfg := DefaultConfiguration()
	if got := cfg.Codec(); got != kgo.NoCompression() {
		t.Errorf("Codec() with the embedded broker = %v, want none", got)
	}
	cfg.Brokers = []string{"kafka-1:9092"}
	if got := cfg.Codec(); got != kgo.Lz4Compression() {
		t.Errorf("Codec() with kafka.brokers = %v, want lz4", got)
	}
	cfg.Compression = "zstd"
	if got := cfg.Codec(); got != kgo.ZstdCompression() {
		t.Errorf("Codec() with compression zstd = %v, want zstd", got)
	}
	cfg.Compression = "brotli"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "kafka.compression") || !strings.Contains(err.Error(), `"brotli"`) {
		t.Errorf("Validate() with compression brotli = %v, want an error naming kafka.compression and the value", err)
	}
}

func TestTopicNames(t *testing.T) {
	cfg := DefaultConfiguration()
	got := []string{
		cfg.Topic(TopicFlows), cfg.Topic(TopicAccess), cfg.Topic(TopicEnriched),
		cfg.Topic(TopicAlerts), cfg.Topic(TopicDeadLetter),
	}
	want := []string{"flowaudit.flows.v1", "flowaudit.access.v1", "flowaudit.enriched.v1", "flowaudit.alerts.v1", "flowaudit.deadletter.v1"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("topic names (-got +want):\n%s", diff)
	}
	cfg.TopicPrefix = "lab-1"
	if got := cfg.Topic(TopicFlows); got != "lab-1.flows.v1" {
		t.Errorf("Topic(flows) with prefix lab-1 = %q, want lab-1.flows.v1", got)
	}
}

func TestExternalBrokers(t *testing.T) {
	cfg := DefaultConfiguration()
	cfg.Brokers = []string{"kafka-1:9092", "kafka-2:9092"}
	cfg.EmbeddedListen = "" // ignored with brokers set
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate(): %v", err)
	}
	if cfg.Embedded() {
		t.Error("Embedded() = true with kafka.brokers set")
	}
	if diff := cmp.Diff(cfg.SeedBrokers(), cfg.Brokers); diff != "" {
		t.Errorf("SeedBrokers() (-got +want):\n%s", diff)
	}
	if _, err := NewBroker(nil, cfg, t.TempDir()); err == nil || !strings.Contains(err.Error(), "kafka.brokers") {
		t.Errorf("NewBroker with kafka.brokers set: error %v, want one naming kafka.brokers", err)
	}
}

func TestValidateErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Configuration)
		want   []string
	}{
		{"broker without port", func(c *Configuration) { c.Brokers = []string{"a:9092", "kafka-2"} }, []string{"kafka.brokers[1]:", `"kafka-2"`}},
		{"embedded listen without port", func(c *Configuration) { c.EmbeddedListen = "localhost" }, []string{"kafka.embedded_listen:", `"localhost"`}},
		{"empty topic prefix", func(c *Configuration) { c.TopicPrefix = "" }, []string{"kafka.topic_prefix:"}},
		{"topic prefix with a slash", func(c *Configuration) { c.TopicPrefix = "a/b" }, []string{"kafka.topic_prefix:", `"a/b"`}},
		{"topic prefix too long", func(c *Configuration) { c.TopicPrefix = strings.Repeat("x", 201) }, []string{"kafka.topic_prefix:"}},
		{"zero partitions", func(c *Configuration) { c.Partitions = 0 }, []string{"kafka.partitions:", "got 0"}},
		{"too many partitions", func(c *Configuration) { c.Partitions = 10001 }, []string{"kafka.partitions:", "got 10001"}},
		{"zero replication", func(c *Configuration) { c.ReplicationFactor = 0 }, []string{"kafka.replication_factor:", "got 0"}},
		{"negative linger", func(c *Configuration) { c.ProduceLinger = -time.Millisecond }, []string{"kafka.produce_linger:", "got -1ms"}},
		{"long linger", func(c *Configuration) { c.ProduceLinger = 2 * time.Second }, []string{"kafka.produce_linger:", "got 2s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfiguration()
			tt.modify(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() error %q, want it to contain %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "kafka."); n != 1 {
				t.Errorf("Validate() error %q names %d keys, want 1", err, n)
			}
		})
	}
}
