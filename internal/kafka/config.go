package kafka

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Configuration is the kafka section of the configuration file.
type Configuration struct {
	// Brokers are seed brokers of an existing cluster. Empty means: use the
	// embedded broker listening on EmbeddedListen.
	Brokers []string `yaml:"brokers"`
	// EmbeddedListen is where the embedded broker listens (host:port).
	EmbeddedListen string `yaml:"embedded_listen"`
	// TopicPrefix starts every topic name: PREFIX.flows.v1 and so on.
	TopicPrefix string `yaml:"topic_prefix"`
	// Partitions is the partition count used when flowaudit creates a
	// topic. It bounds how many consumers of one group share the work.
	Partitions int32 `yaml:"partitions"`
	// ReplicationFactor is used when flowaudit creates a topic on a real
	// cluster (the embedded broker has one replica).
	ReplicationFactor int16 `yaml:"replication_factor"`
	// ClientID names this process in broker logs and quotas.
	ClientID string `yaml:"client_id"`
	// ProduceLinger bounds how long a record waits in the producer for
	// its batch to fill.
	ProduceLinger time.Duration `yaml:"produce_linger"`
	// Retention is retention.ms of the topics flowaudit creates: how long
	// the broker keeps records (ClickHouse keeps them longer). 0 leaves
	// the broker's default.
	Retention time.Duration `yaml:"retention"`
	// EmbeddedSyncWrites makes the embedded broker fsync every record
	// batch before acknowledging it (kfake SyncWrites). Without it an
	// acknowledged flow survives a process crash (it is in the page
	// cache) but not a power loss or kernel crash; with it, it survives
	// both, at a throughput cost measured in README.md.
	EmbeddedSyncWrites bool `yaml:"embedded_sync_writes"`
	// Compression is the codec of produced record batches: auto (none
	// with the embedded broker, which shares the process and its CPU,
	// lz4 with a cluster, where the network and the broker's disk pay
	// for every byte), none, lz4, zstd, snappy or gzip.
	Compression string `yaml:"compression"`
}

// DefaultConfiguration returns defaults that work on one machine.
func DefaultConfiguration() Configuration {
	return Configuration{
		EmbeddedListen:    "127.0.0.1:9092",
		TopicPrefix:       "flowaudit",
		Partitions:        4,
		ReplicationFactor: 1,
		ClientID:          "flowaudit",
		ProduceLinger:     5 * time.Millisecond,
		Retention:         24 * time.Hour,
		Compression:       "auto",
	}
}

var topicPrefixRE = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,200}$`)

// Validate checks the configuration; errors name the key under kafka.
func (c Configuration) Validate() error {
	var errs []error
	for i, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("kafka.brokers[%d]: %q is not host:port", i, b))
		}
	}
	if len(c.Brokers) == 0 {
		if _, _, err := net.SplitHostPort(c.EmbeddedListen); err != nil {
			errs = append(errs, fmt.Errorf("kafka.embedded_listen: %q is not host:port", c.EmbeddedListen))
		}
	}
	if !topicPrefixRE.MatchString(c.TopicPrefix) {
		errs = append(errs, fmt.Errorf("kafka.topic_prefix: %q must be 1-200 characters of letters, digits, '.', '_' or '-'", c.TopicPrefix))
	}
	if c.Partitions < 1 || c.Partitions > 10000 {
		errs = append(errs, fmt.Errorf("kafka.partitions: must be between 1 and 10000, got %d", c.Partitions))
	}
	if c.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("kafka.replication_factor: must be at least 1, got %d", c.ReplicationFactor))
	}
	if c.ProduceLinger < 0 || c.ProduceLinger > time.Second {
		errs = append(errs, fmt.Errorf("kafka.produce_linger: must be between 0 and 1s, got %s", c.ProduceLinger))
	}
	if _, ok := codecs[c.Compression]; !ok && c.Compression != "auto" {
		errs = append(errs, fmt.Errorf("kafka.compression: %q is not auto, none, lz4, zstd, snappy or gzip", c.Compression))
	}
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("kafka.retention: must be 0 (broker default) or positive, got %s", c.Retention))
	}
	return errors.Join(errs...)
}

var codecs = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
	"snappy": kgo.SnappyCompression(),
	"gzip":   kgo.GzipCompression(),
}

// Codec returns the producers' batch codec for kafka.compression.
func (c Configuration) Codec() kgo.CompressionCodec {
	if codec, ok := codecs[c.Compression]; ok {
		return codec
	}
	if c.Embedded() {
		// In-process: compressing costs the CPU the pipeline runs on
		// and saves nothing but page cache and data_dir bytes.
		return kgo.NoCompression()
	}
	return kgo.Lz4Compression()
}

// Embedded reports whether this configuration asks for the embedded broker.
func (c Configuration) Embedded() bool { return len(c.Brokers) == 0 }

// SeedBrokers returns the brokers clients should dial.
func (c Configuration) SeedBrokers() []string {
	if c.Embedded() {
		return []string{c.EmbeddedListen}
	}
	return c.Brokers
}

// MaxBatchBytes bounds a produced record batch. Kafka's default
// message.max.bytes (and kfake's) is 1 MiB; a batch over the broker's
// limit fails with MESSAGE_TOO_LARGE, which is not retriable.
const MaxBatchBytes = 1000000

// MaxRecordBytes bounds the value of one record flowaudit produces, below
// MaxBatchBytes by the batch and record framing (and LZ4's worst-case
// growth, which the broker sees), so any record fits a batch.
const MaxRecordBytes = MaxBatchBytes - 64<<10

// Topic names. The version suffix is bumped on a breaking payload change.
const (
	TopicFlows      = "flows.v1"
	TopicAccess     = "access.v1"
	TopicEnriched   = "enriched.v1"
	TopicAlerts     = "alerts.v1"
	TopicDeadLetter = "deadletter.v1"
	// TopicDetectKeyed carries detector events re-keyed for detectors
	// that need a global view (per segment pair, per identity, per user).
	TopicDetectKeyed = "detect-keyed.v1"
	// TopicDetectState is the compacted topic of detector checkpoints,
	// keyed by consumer group and instance.
	TopicDetectState = "detect-state.v1"
	// TopicPolicy carries every policy file an enricher applied
	// (schemas.PolicyVersion), keyed by version, for the sink to record.
	TopicPolicy = "policy.v1"
)

// Topic returns the full name of one of the Topic* names.
func (c Configuration) Topic(name string) string { return c.TopicPrefix + "." + name }
