package report

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

// Request is what to report on.
type Request struct {
	Framework  string
	Window     query.Window
	PolicyFile string
	// RetentionTTL is clickhouse.retention.
	RetentionTTL time.Duration
	// Now is the generation time (default time.Now()).
	Now time.Time
}

// ProbeHistory is how far back segmentation tests count (PCI DSS 11.4.5:
// at least once every 12 months).
const ProbeHistory = 365 * 24 * time.Hour

// Generate reads everything a pack needs through r and builds it.
func Generate(ctx context.Context, r *query.Reader, req Request) (*Pack, error) {
	if req.PolicyFile == "" {
		return nil, fmt.Errorf("report: the configuration has no policy.file; set it to the policy whose segments label the traffic")
	}
	data, err := os.ReadFile(req.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("policy.file: %w", err)
	}
	p, err := policy.Parse(data, req.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("policy.file: %w", err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("policy.file: %w", err)
	}
	sum := sha256.Sum256(data)
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	in := Inputs{
		Framework: req.Framework, GeneratedAt: now, Window: req.Window, Policy: m, PolicyFile: req.PolicyFile,
		PolicySHA: hex.EncodeToString(sum[:]), RetentionTTL: req.RetentionTTL,
		ProbeWindow: query.Window{From: req.Window.To.Add(-ProbeHistory), To: req.Window.To},
	}
	if in.Services, err = r.ServiceRows(ctx, req.Window); err != nil {
		return nil, err
	}
	if in.AccessSources, err = r.AccessSources(ctx, req.Window); err != nil {
		return nil, err
	}
	if in.FailedAccess, err = r.FailedAccesses(ctx, req.Window); err != nil {
		return nil, err
	}
	if in.Alerts, err = r.Alerts(ctx, req.Window, nil); err != nil {
		return nil, err
	}
	if in.Retention, err = r.Retention(ctx); err != nil {
		return nil, err
	}
	if in.ProbeRuns, err = r.ProbeRuns(ctx, in.ProbeWindow); err != nil {
		return nil, err
	}
	if in.PolicyVersions, err = r.PolicyVersions(ctx); err != nil {
		return nil, err
	}
	// The audit layer's analyses, as "audit gaps" and "audit identities"
	// compute them.
	var gi audit.GapsInput
	if gi.Edges, err = r.ServiceEdges(ctx, req.Window); err != nil {
		return nil, err
	}
	if gi.Violations, err = r.ViolationEdges(ctx, req.Window); err != nil {
		return nil, err
	}
	if gi.Mismatches, err = r.EnforcementMismatches(ctx, req.Window); err != nil {
		return nil, err
	}
	if gi.Versions, err = r.AppliedPolicies(ctx); err != nil {
		return nil, err
	}
	in.Gaps = audit.Gaps(m, gi, audit.DefaultGapsOptions(req.Window))
	idEdges, err := r.IdentityEdges(ctx, req.Window)
	if err != nil {
		return nil, err
	}
	sessions, err := r.AccessSessions(ctx, req.Window)
	if err != nil {
		return nil, err
	}
	in.Identities = audit.ReviewIdentities(idEdges, sessions, m, audit.IdentityOptions{Window: req.Window})
	return Build(in)
}
