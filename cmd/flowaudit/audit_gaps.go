package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/audit"
)

func cmdAuditGaps(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit gaps", "[--since 90d] [--format table|json] [--fail-on low|medium|high|critical|none]", `
Report the gaps between the configured policy, its review metadata and the
traffic of the window, as findings with a stable ID, a severity, the rule
or segment concerned, a message and evidence:

  UNUSED_RULE, SHADOWED_RULE (every connection it matches is decided by
  earlier rules, possibly several together), REDUNDANT_RULE (removing it
  changes no decision), BROAD_PORTS, BROAD_PEERS, SILENT_SEGMENT,
  OVERSEGMENTED, UNDERSEGMENTED, UNLABELLED_SPACE, EXPOSED_SENSITIVE,
  VIOLATION_HOTSPOT, ENV_CROSSING, LATERAL_PATH, MISSING_JUSTIFICATION,
  OVERDUE_REVIEW, ENFORCEMENT_GAP.

Shadowed and redundant rules are computed from the policy alone, exactly,
by interval arithmetic over segments, inventory labels, identities,
protocols and ports. Traffic findings relabel the stored edges with the
policy and decide them with the code the enricher runs. Sensitive
segments carry the tag sensitive or pci-cde, low-trust ones low-trust or
untrusted, environments env:NAME. Review ages come from policy_versions.`, stderr)
	var af auditFlags
	af.register(fs, "90d", "table or json", "a severity: low, medium, high, critical, or none")
	hotspot := fs.Uint64("hotspot-hours", 3, "distinct `hours` with violations on one edge from which they are a VIOLATION_HOTSPOT")
	reviewAge := fs.String("review-age", "180d", "`duration` a rule without review_by may stay applied before OVERDUE_REVIEW")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "flowaudit audit gaps: unexpected argument %q\n", pos[0])
		return 2
	}
	w, err := af.window(time.Now())
	opt := audit.DefaultGapsOptions(w)
	if err == nil {
		if opt.ReviewAge, err = parseSince(*reviewAge); err != nil {
			err = fmt.Errorf("--review-age: %w", err)
		}
	}
	switch {
	case err != nil:
	case af.format != "table" && af.format != "json":
		err = fmt.Errorf("--format: %q is not table or json", af.format)
	case af.failOn != "none" && audit.SeverityRank(af.failOn) < 0:
		err = fmt.Errorf("--fail-on: %q is not %s or none", af.failOn, strings.Join(audit.Severities, ", "))
	case *hotspot == 0:
		err = fmt.Errorf("--hotspot-hours: must be at least 1")
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit gaps: %v\n", err)
		return 2
	}
	opt.HotspotHours = *hotspot

	env, ok := openAudit("audit gaps", af, true, stderr)
	if !ok {
		return 2
	}
	defer env.close()
	ctx, cancel := signalContext()
	defer cancel()
	var in audit.GapsInput
	if in.Edges, err = env.reader.ServiceEdges(ctx, w); err == nil {
		if in.Violations, err = env.reader.ViolationEdges(ctx, w); err == nil {
			if in.Mismatches, err = env.reader.EnforcementMismatches(ctx, w); err == nil {
				in.Versions, err = env.reader.AppliedPolicies(ctx)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit gaps: %v\n", err)
		return 2
	}
	rep := audit.Gaps(env.policy, in, opt)
	if af.format == "json" {
		err = audit.WriteGapsJSON(stdout, rep)
	} else {
		err = audit.WriteGapsTable(stdout, rep)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit gaps: %v\n", err)
		return 2
	}
	if minRank := audit.SeverityRank(af.failOn); minRank >= 0 {
		for _, f := range rep.Findings {
			if audit.SeverityRank(f.Severity) >= minRank {
				return 1
			}
		}
	}
	return 0
}
