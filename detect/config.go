package detect

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/flowaudit/flowaudit/detect/engine"
)

// Configuration is the detect section of the configuration file: the
// detectors' settings (detect.policy_violation, detect.address_scan, …)
// and the stage's own keys.
type Configuration struct {
	engine.Configuration `yaml:",inline"`
	// ConsumerGroup shares enriched flows, access events and re-keyed
	// detector events among detect processes.
	ConsumerGroup string `yaml:"consumer_group"`
	// WebhookConsumerGroup delivers each alert to the webhooks once,
	// whichever detect process takes it.
	WebhookConsumerGroup string `yaml:"webhook_consumer_group"`
	// InstanceID names this process's detector checkpoint; keep it stable
	// across restarts (default: the host name).
	InstanceID string `yaml:"instance_id"`
	// CheckpointInterval is how often detector state and offsets are
	// saved together; a restart resumes from the last checkpoint.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// Baseline loads new_edge's baseline from ClickHouse's observed_edges
	// at start.
	Baseline bool `yaml:"baseline_from_clickhouse"`
	// PolicyDrift alerts when a reloaded policy opens access into a
	// sensitive segment (detect.policy_drift; off by default).
	PolicyDrift PolicyDriftConfig `yaml:"policy_drift"`
}

// DefaultConfiguration returns the defaults.
func DefaultConfiguration() Configuration {
	host, _ := os.Hostname()
	if host == "" {
		host = "detect"
	}
	return Configuration{
		Configuration:        engine.DefaultConfiguration(),
		ConsumerGroup:        "flowaudit-detect",
		WebhookConsumerGroup: "flowaudit-webhooks",
		InstanceID:           host,
		CheckpointInterval:   30 * time.Second,
		Baseline:             true,
		PolicyDrift:          defaultPolicyDrift(),
	}
}

// Validate checks the configuration; errors name the key.
func (c Configuration) Validate() error {
	var errs []error
	if err := c.Configuration.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.PolicyDrift.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ConsumerGroup == "" {
		errs = append(errs, errors.New("detect.consumer_group: must not be empty"))
	}
	if c.WebhookConsumerGroup == "" {
		errs = append(errs, errors.New("detect.webhook_consumer_group: must not be empty"))
	}
	if c.InstanceID == "" {
		errs = append(errs, errors.New("detect.instance_id: must not be empty"))
	}
	if c.CheckpointInterval < 100*time.Millisecond || c.CheckpointInterval > time.Hour {
		errs = append(errs, fmt.Errorf("detect.checkpoint_interval: must be between 100ms and 1h, got %s", c.CheckpointInterval))
	}
	return errors.Join(errs...)
}
