package sink

import (
	"errors"
	"fmt"
	"time"
)

// Configuration is the sink section of the configuration file.
type Configuration struct {
	// BatchRows flushes a batch to ClickHouse once it holds this many rows.
	BatchRows int `yaml:"batch_rows"`
	// BatchInterval flushes a non-empty batch at least this often.
	BatchInterval time.Duration `yaml:"batch_interval"`
	// ConsumerGroup is the Kafka consumer group of the sink (flows and
	// access events); run more sink processes with the same group to
	// share the partitions.
	ConsumerGroup string `yaml:"consumer_group"`
	// MaxRetryBackoff caps the wait between attempts while ClickHouse is
	// failing; the sink retries for as long as it takes and never skips.
	MaxRetryBackoff time.Duration `yaml:"max_retry_backoff"`
	// ShutdownTimeout bounds the final flush on a clean stop; rows not
	// inserted by then are not committed and are read again on restart.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// FlowsFrom is the topic flows are read from: "enriched" (the enrich
	// stage's output, with segments, identities and verdicts) or "flows"
	// (the collectors' output, when no enrich stage runs).
	FlowsFrom string `yaml:"flows_from"`
}

// DefaultConfiguration returns the defaults (100k rows or 1 s).
func DefaultConfiguration() Configuration {
	return Configuration{
		BatchRows:       100_000,
		BatchInterval:   time.Second,
		ConsumerGroup:   "flowaudit-sink",
		MaxRetryBackoff: 5 * time.Second,
		ShutdownTimeout: 15 * time.Second,
		FlowsFrom:       "enriched",
	}
}

// Validate checks the configuration; errors name the key.
func (c Configuration) Validate() error {
	var errs []error
	if c.BatchRows < 1 || c.BatchRows > 10_000_000 {
		errs = append(errs, fmt.Errorf("sink.batch_rows: must be between 1 and 10000000, got %d", c.BatchRows))
	}
	if c.BatchInterval < 10*time.Millisecond || c.BatchInterval > time.Minute {
		errs = append(errs, fmt.Errorf("sink.batch_interval: must be between 10ms and 1m, got %s", c.BatchInterval))
	}
	if c.ConsumerGroup == "" {
		errs = append(errs, errors.New("sink.consumer_group: must not be empty"))
	}
	if c.MaxRetryBackoff < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("sink.max_retry_backoff: must be at least 100ms, got %s", c.MaxRetryBackoff))
	}
	if c.FlowsFrom != "enriched" && c.FlowsFrom != "flows" {
		errs = append(errs, fmt.Errorf("sink.flows_from: %q is not enriched or flows", c.FlowsFrom))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("sink.shutdown_timeout: must be positive, got %s", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}
