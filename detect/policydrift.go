package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

// AlertPolicyDrift is the kind of the policy_drift detector's alerts: a
// newly applied policy version opens connections into a sensitive
// segment.
const AlertPolicyDrift = "policy_drift"

// PolicyDriftConfig is detect.policy_drift: on every policy reload,
// compare the new version with the one in force (audit diff's semantic
// comparison) and raise an alert when it opens a connection into a
// segment carrying one of Tags. Off by default.
type PolicyDriftConfig struct {
	Enabled bool `yaml:"enabled"`
	// Tags mark the segments access into which is alerted on (default
	// sensitive and pci-cde).
	Tags []string `yaml:"tags"`
	// Severity of the alert: low, medium, high (default) or critical.
	Severity string `yaml:"severity"`
}

func defaultPolicyDrift() PolicyDriftConfig {
	return PolicyDriftConfig{Tags: []string{"sensitive", "pci-cde"}, Severity: "high"}
}

func (c PolicyDriftConfig) validate() error {
	if _, ok := schemas.ParseSeverity(c.Severity); !ok {
		return fmt.Errorf("detect.policy_drift.severity: %q is not low, medium, high or critical", c.Severity)
	}
	if c.Enabled && len(c.Tags) == 0 {
		return fmt.Errorf("detect.policy_drift.tags: must name at least one segment tag (e.g. [sensitive])")
	}
	return nil
}

// appliedPolicy is a reload handed to the detection loop, with the file
// it came from (for its version).
type appliedPolicy struct {
	m       *policy.Matcher
	content []byte
}

// policyDriftState is the policy the next reload is compared with; used
// by the detection loop only.
type policyDriftState struct {
	base        *policy.Policy
	baseVersion string // "" when unknown (the policy given at start)
}

// checkPolicyDrift compares a reload with the policy in force and emits a
// policy_drift alert when it opens access into a tagged segment; the
// reload then becomes the base.
func (c *Component) checkPolicyDrift(ap *appliedPolicy) {
	cfg := c.cfg.PolicyDrift
	version := schemas.PolicyVersionOf(ap.content)
	old := c.drift.base
	prevVersion := c.drift.baseVersion
	c.drift.base, c.drift.baseVersion = ap.m.Policy(), version
	if old == nil || !cfg.Enabled {
		return
	}
	a, err := PolicyDriftAlert(old, ap.m.Policy(), prevVersion, version, cfg, time.Now())
	if err != nil {
		c.log.Warn("policy_drift: cannot compare the policy versions", "err", err)
		return
	}
	if a != nil {
		c.emit(a)
	}
}

// PolicyDriftAlert returns the policy_drift alert of replacing old
// (version prevVersion, "" if unknown) with new (version), or nil when
// new opens no connection into a segment of new carrying one of
// cfg.Tags. The alert ID is derived from both versions, so every detect
// process applying the same reload raises the same alert.
func PolicyDriftAlert(old, new *policy.Policy, prevVersion, version string, cfg PolicyDriftConfig, now time.Time) (*schemas.Alert, error) {
	d, err := audit.DiffPolicies(old, new)
	if err != nil {
		return nil, err
	}
	tagged := map[string]bool{}
	for _, s := range new.Segments {
		for _, t := range s.Tags {
			if slices.Contains(cfg.Tags, t) {
				tagged[s.Name] = true
			}
		}
	}
	type opened struct {
		Src      string `json:"src"`
		Dst      string `json:"dst"`
		Ports    string `json:"ports"`
		Identity string `json:"identity"`
		Rules    string `json:"rules"`
	}
	var open []opened
	var first *audit.DiffChange
	for i := range d.Changes {
		ch := &d.Changes[i]
		if ch.Change != audit.Added || !tagged[ch.DstSegment] {
			continue
		}
		if first == nil {
			first = ch
		}
		open = append(open, opened{Src: audit.DiffEndName(ch.SrcSegment, ch.SrcWorkload, ch.SrcCIDRs),
			Dst: audit.DiffEndName(ch.DstSegment, ch.DstWorkload, ch.DstCIDRs), Ports: ch.Ports, Identity: ch.Identity,
			Rules: strings.Join(ch.AfterRules, ",")})
	}
	if len(open) == 0 {
		return nil, nil
	}
	evidence, err := json.Marshal(map[string]any{"version": version, "previous": prevVersion, "opened": open})
	if err != nil {
		return nil, err
	}
	sev, _ := schemas.ParseSeverity(cfg.Severity)
	sum := sha256.Sum256([]byte(AlertPolicyDrift + "|" + prevVersion + "|" + version))
	var list []string
	for i, o := range open {
		if i == 3 {
			list = append(list, fmt.Sprintf("and %d more", len(open)-3))
			break
		}
		list = append(list, fmt.Sprintf("%s -> %s %s", o.Src, o.Dst, o.Ports))
	}
	t := uint64(now.UnixNano())
	return &schemas.Alert{
		ID: hex.EncodeToString(sum[:16]), Time: t, Kind: AlertPolicyDrift, Severity: sev,
		SrcSegment: first.SrcSegment, DstSegment: first.DstSegment, DstPort: first.PortLo, Proto: protoNumber(first.Proto),
		FirstSeen: t, LastSeen: t, Count: uint64(len(open)),
		Summary: fmt.Sprintf("policy version %s opens %d connection(s) into sensitive segments: %s",
			short(version), len(open), strings.Join(list, ", ")),
		Evidence: string(evidence),
	}, nil
}

func protoNumber(name string) uint8 {
	switch name {
	case "tcp":
		return policy.ProtoTCP
	case "udp":
		return policy.ProtoUDP
	case "icmp":
		return policy.ProtoICMP
	case "icmpv6":
		return policy.ProtoICMPv6
	}
	return 0
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}
