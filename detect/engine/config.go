package engine

import (
	"fmt"
	"time"
)

// Configuration configures every detector. It is the detect.<detector> part of the
// configuration file; every key is optional and DefaultConfiguration gives the
// values below. Scope (Segments, Tags) names the DESTINATION segment of a
// finding: empty means every segment; when both are set a segment in
// scope must be listed in Segments or carry one of Tags.
type Configuration struct {
	PolicyViolation    PolicyViolationConfig `yaml:"policy_violation"`
	NewEdge            NewEdgeConfig         `yaml:"new_edge"`
	AddressScan        ScanConfig            `yaml:"address_scan"`
	PortScan           ScanConfig            `yaml:"port_scan"`
	VolumeSpike        VolumeSpikeConfig     `yaml:"volume_spike"`
	AuthBruteforce     BruteforceConfig      `yaml:"auth_bruteforce"`
	UnattributedAccess UnattributedConfig    `yaml:"unattributed_access"`
	LateralChain       LateralChainConfig    `yaml:"lateral_chain"`

	// Suppress: after an alert for (kind, key), no new alert (new window)
	// for the same (kind, key) for this long. Updates of the alerted
	// window are not suppressed. Default 15m.
	Suppress time.Duration `yaml:"suppress"`
	// Lateness is how long after its end a window stays open for
	// out-of-order events (event time). Default 30s.
	Lateness time.Duration `yaml:"lateness"`
	// MaxSources caps the source addresses tracked by the per-source
	// detectors; beyond it the least recently seen of a sample of tracked
	// sources is evicted. Default 1<<20.
	MaxSources int `yaml:"max_sources"`
	// MaxKeysPerSource caps the windows (aggregates) one source may hold
	// across policy_violation, unattributed_access, address_scan,
	// port_scan and auth_bruteforce; new keys beyond it are dropped until a
	// window closes. Default 64.
	MaxKeysPerSource int `yaml:"max_keys_per_source"`
}

// Scope restricts a detector to destination segments.
type Scope struct {
	Segments []string `yaml:"segments"`
	Tags     []string `yaml:"tags"`
}

// PolicyViolationConfig: flows with the violation verdict, aggregated per
// (source, destination segment, destination port, proto) per Window.
type PolicyViolationConfig struct {
	Enabled  bool          `yaml:"enabled"`
	Window   time.Duration `yaml:"window"`    // default 1m
	MinFlows uint64        `yaml:"min_flows"` // flows in a window before alerting; default 1
	Scope    `yaml:",inline"`
}

// NewEdgeConfig: a (src segment, dst segment, dst port, proto) edge absent
// from the baseline (or last seen more than Baseline ago).
type NewEdgeConfig struct {
	Enabled bool `yaml:"enabled"`
	// Baseline is how long a seen edge stays known. Default 7 days.
	Baseline time.Duration `yaml:"baseline"`
	// Learning: silent (edges are learned, not alerted) until this much
	// event time has passed since the engine's first event, or since the
	// oldest LastSeen of a loaded baseline. Default 1h.
	Learning time.Duration `yaml:"learning"`
	// IntraSegment also tracks edges inside one segment. Default false.
	IntraSegment bool `yaml:"intra_segment"`
	Scope        `yaml:",inline"`
}

// ScanConfig configures address_scan (distinct hosts of one destination
// segment on one port) and port_scan (distinct ports of one host).
type ScanConfig struct {
	Enabled bool `yaml:"enabled"`
	// Threshold distinct hosts (address_scan, default 25) or ports
	// (port_scan, default 15) within Window.
	Threshold int           `yaml:"threshold"`
	Window    time.Duration `yaml:"window"` // default 5m
	// MaxTracked caps the distinct values remembered per key (default 64,
	// at least Threshold): beyond it the count saturates and the alert says
	// "at least".
	MaxTracked int `yaml:"max_tracked"`
	// AllFlows counts every flow as an attempt. By default only flows that
	// look like connection attempts that were not answered count, as
	// Zeek's scan detector counts failed connections: TCP without ACK
	// (SYN probes, SYN+RST, bare RST/FIN), TCP without flags of at most 3
	// packets, UDP of at most 3 packets, ICMP echo requests.
	AllFlows bool `yaml:"all_flows"`
	// MinProbeShare: attempts must be at least this share of the source's
	// flows of the key in the window (answered flows included). Keeps busy
	// clients whose few unanswered SYNs span many servers quiet. Default
	// 0.5; 0 disables.
	MinProbeShare float64 `yaml:"min_probe_share"`
	Scope         `yaml:",inline"`
}

// VolumeSpikeConfig: per (src segment, dst segment) bytes per minute above
// an EWMA mean + K·σ.
type VolumeSpikeConfig struct {
	Enabled    bool    `yaml:"enabled"`
	K          float64 `yaml:"k"`           // default 3
	Alpha      float64 `yaml:"alpha"`       // EWMA weight of a new minute, default 0.1
	MinSamples int     `yaml:"min_samples"` // minutes of history before alerting, default 10
	// MinBytes: a minute below this many bytes never alerts. Default 10 MB.
	MinBytes uint64 `yaml:"min_bytes"`
	// MinRatio: the minute must also exceed MinRatio × mean. Default 3.
	MinRatio float64 `yaml:"min_ratio"`
	// Sustain: consecutive minutes above the limit before alerting.
	// Default 2: flow sizes are heavy-tailed, and one elephant flow in a
	// minute is normal; exfiltration lasts. Minutes above the limit enter
	// the statistics clamped to the limit.
	Sustain int `yaml:"sustain"`
	Scope   `yaml:",inline"`
}

// BruteforceConfig: failed logins per source and per user.
type BruteforceConfig struct {
	Enabled   bool          `yaml:"enabled"`
	Threshold uint64        `yaml:"threshold"` // failed logins, default 10
	Window    time.Duration `yaml:"window"`    // default 5m
	Scope     `yaml:",inline"`
}

// UnattributedConfig: flows without a source identity into a segment
// carrying Tag.
type UnattributedConfig struct {
	Enabled  bool          `yaml:"enabled"`
	Tag      string        `yaml:"tag"`       // default "sensitive"
	Window   time.Duration `yaml:"window"`    // default 1m
	MinFlows uint64        `yaml:"min_flows"` // default 1
	Scope    `yaml:",inline"`
}

// LateralChainConfig: one identity reaching A→B then B→C within Window.
type LateralChainConfig struct {
	Enabled bool          `yaml:"enabled"`
	Window  time.Duration `yaml:"window"` // default 60m
	Scope   `yaml:",inline"`
}

// DefaultConfiguration returns the defaults: every detector enabled, Zeek's scan
// thresholds.
func DefaultConfiguration() Configuration {
	return Configuration{
		PolicyViolation: PolicyViolationConfig{Enabled: true, Window: time.Minute, MinFlows: 1},
		NewEdge:         NewEdgeConfig{Enabled: true, Baseline: 7 * 24 * time.Hour, Learning: time.Hour},
		AddressScan: ScanConfig{Enabled: true, Threshold: 25, Window: 5 * time.Minute, MaxTracked: 64,
			MinProbeShare: 0.5},
		PortScan: ScanConfig{Enabled: true, Threshold: 15, Window: 5 * time.Minute, MaxTracked: 64,
			MinProbeShare: 0.5},
		VolumeSpike: VolumeSpikeConfig{Enabled: true, K: 3, Alpha: 0.1, MinSamples: 10,
			MinBytes: 10_000_000, MinRatio: 3, Sustain: 2},
		AuthBruteforce:     BruteforceConfig{Enabled: true, Threshold: 10, Window: 5 * time.Minute},
		UnattributedAccess: UnattributedConfig{Enabled: true, Tag: "sensitive", Window: time.Minute, MinFlows: 1},
		LateralChain:       LateralChainConfig{Enabled: true, Window: time.Hour},
		Suppress:           15 * time.Minute,
		Lateness:           30 * time.Second,
		MaxSources:         1 << 20,
		MaxKeysPerSource:   64,
	}
}

// Validate checks c; errors name the key ("detect.address_scan.threshold: ...").
func (c Configuration) Validate() error {
	pos := func(key string, d time.Duration) error {
		if d <= 0 {
			return fmt.Errorf("detect.%s: must be positive, got %s", key, d)
		}
		return nil
	}
	type check func() error
	checks := []check{
		func() error { return pos("policy_violation.window", c.PolicyViolation.Window) },
		func() error { return pos("new_edge.baseline", c.NewEdge.Baseline) },
		func() error {
			if c.NewEdge.Learning < 0 {
				return fmt.Errorf("detect.new_edge.learning: must not be negative, got %s", c.NewEdge.Learning)
			}
			return nil
		},
		func() error { return c.AddressScan.validate("address_scan") },
		func() error { return c.PortScan.validate("port_scan") },
		func() error {
			v := c.VolumeSpike
			switch {
			case v.K <= 0:
				return fmt.Errorf("detect.volume_spike.k: must be positive, got %g", v.K)
			case v.Alpha <= 0 || v.Alpha >= 1:
				return fmt.Errorf("detect.volume_spike.alpha: must be in (0, 1), got %g", v.Alpha)
			case v.MinSamples < 1:
				return fmt.Errorf("detect.volume_spike.min_samples: must be at least 1, got %d", v.MinSamples)
			case v.Sustain < 1:
				return fmt.Errorf("detect.volume_spike.sustain: must be at least 1, got %d", v.Sustain)
			case v.MinRatio < 0:
				return fmt.Errorf("detect.volume_spike.min_ratio: must not be negative, got %g", v.MinRatio)
			}
			return nil
		},
		func() error {
			if c.AuthBruteforce.Threshold < 1 {
				return fmt.Errorf("detect.auth_bruteforce.threshold: must be at least 1, got %d", c.AuthBruteforce.Threshold)
			}
			return pos("auth_bruteforce.window", c.AuthBruteforce.Window)
		},
		func() error {
			if c.UnattributedAccess.Tag == "" {
				return fmt.Errorf("detect.unattributed_access.tag: must not be empty")
			}
			return pos("unattributed_access.window", c.UnattributedAccess.Window)
		},
		func() error { return pos("lateral_chain.window", c.LateralChain.Window) },
		func() error {
			if c.Suppress < 0 {
				return fmt.Errorf("detect.suppress: must not be negative, got %s", c.Suppress)
			}
			if c.Lateness < 0 {
				return fmt.Errorf("detect.lateness: must not be negative, got %s", c.Lateness)
			}
			if c.MaxSources < 1 {
				return fmt.Errorf("detect.max_sources: must be at least 1, got %d", c.MaxSources)
			}
			if c.MaxKeysPerSource < 1 {
				return fmt.Errorf("detect.max_keys_per_source: must be at least 1, got %d", c.MaxKeysPerSource)
			}
			return nil
		},
	}
	for _, ch := range checks {
		if err := ch(); err != nil {
			return err
		}
	}
	return nil
}

func (s ScanConfig) validate(name string) error {
	switch {
	case s.Threshold < 1:
		return fmt.Errorf("detect.%s.threshold: must be at least 1, got %d", name, s.Threshold)
	case s.Window <= 0:
		return fmt.Errorf("detect.%s.window: must be positive, got %s", name, s.Window)
	case s.MaxTracked < s.Threshold:
		return fmt.Errorf("detect.%s.max_tracked: must be at least threshold (%d), got %d", name, s.Threshold, s.MaxTracked)
	case s.MaxTracked > 1<<16:
		return fmt.Errorf("detect.%s.max_tracked: at most %d, got %d", name, 1<<16, s.MaxTracked)
	case s.MinProbeShare < 0 || s.MinProbeShare > 1:
		return fmt.Errorf("detect.%s.min_probe_share: must be in [0, 1], got %g", name, s.MinProbeShare)
	}
	return nil
}
