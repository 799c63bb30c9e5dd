package probe

import (
	"errors"
	"fmt"
	"time"
)

// Configuration is the probe section of the configuration file.
type Configuration struct {
	// Rate is the most connection attempts started per second.
	Rate float64 `yaml:"rate"`
	// Timeout is how long one attempt waits for an answer before it counts
	// as filtered.
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts bounds one run: a plan with more attempts is refused
	// (narrow it with --from-segment, fewer targets or a smaller sample).
	MaxAttempts int `yaml:"max_attempts"`
	// MaxDuration bounds one run's wall time; attempts not started by then
	// are counted as skipped.
	MaxDuration time.Duration `yaml:"max_duration"`
	// TargetsPerSegment is how many addresses of each destination segment
	// are probed: inventory workloads first, then the first hosts of the
	// segment's CIDRs.
	TargetsPerSegment int `yaml:"targets_per_segment"`
	// DeniedSample is how many pseudo-random denied ports are probed per
	// target on top of the ports the policy names and the ports attackers
	// try first.
	DeniedSample int `yaml:"denied_sample"`
	// ICMP sends one echo request per target when the process may open an
	// ICMP socket (unprivileged ping sockets or raw as root).
	ICMP bool `yaml:"icmp"`
	// Schedule is a cron expression ("@every 6h", "0 3 * * *"): `run`
	// probes on it from FromSegment. "" disables scheduled probes.
	Schedule string `yaml:"schedule"`
	// FromSegment is the segment scheduled probes run from; "" = the
	// segment of this host's addresses.
	FromSegment string `yaml:"from_segment"`
}

// DefaultConfiguration returns the defaults.
func DefaultConfiguration() Configuration {
	return Configuration{
		Rate:              50,
		Timeout:           2 * time.Second,
		MaxAttempts:       5000,
		MaxDuration:       10 * time.Minute,
		TargetsPerSegment: 2,
		DeniedSample:      3,
		ICMP:              true,
	}
}

// Validate checks every key; each error names it.
func (c Configuration) Validate() error {
	var errs []error
	if c.Rate <= 0 || c.Rate > 10000 {
		errs = append(errs, fmt.Errorf("probe.rate: %v is not in (0, 10000] attempts per second", c.Rate))
	}
	if c.Timeout <= 0 || c.Timeout > time.Minute {
		errs = append(errs, fmt.Errorf("probe.timeout: %v is not in (0, 1m]", c.Timeout))
	}
	if c.MaxAttempts <= 0 {
		errs = append(errs, fmt.Errorf("probe.max_attempts: %d must be positive", c.MaxAttempts))
	}
	if c.MaxDuration <= 0 {
		errs = append(errs, fmt.Errorf("probe.max_duration: %v must be positive", c.MaxDuration))
	}
	if c.TargetsPerSegment <= 0 || c.TargetsPerSegment > 256 {
		errs = append(errs, fmt.Errorf("probe.targets_per_segment: %d is not in [1, 256]", c.TargetsPerSegment))
	}
	if c.DeniedSample < 0 || c.DeniedSample > 1000 {
		errs = append(errs, fmt.Errorf("probe.denied_sample: %d is not in [0, 1000]", c.DeniedSample))
	}
	if c.Schedule != "" {
		if _, err := cronParser.Parse(c.Schedule); err != nil {
			errs = append(errs, fmt.Errorf("probe.schedule: %q: %v (use a 5-field cron expression or @every 6h)", c.Schedule, err))
		}
	}
	return errors.Join(errs...)
}
