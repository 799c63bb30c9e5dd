package main

import (
	"fmt"
	"io"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/query"
)

func cmdAuditDrift(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit drift", "[--since 180d] [--format table|json] [--fail-on opened|sensitive|none]", `
How policy and traffic moved over the window: every policy version the
enrichers applied in it (from policy_versions; re-applications of the
version in force are counted, not listed), what each opened and closed
against the version before it (the semantic diff of "audit diff" over the
stored files), the service edges (client segment, server segment, port,
client identity; intra-segment traffic aside) first seen since the last
version was applied (by hour, from rule_hits_1h), and the violations per
day. --fail-on opened exits 1 when a version of the window opened any
connection, --fail-on sensitive when one opened a connection into a
segment tagged sensitive or pci-cde.`, stderr)
	var af auditFlags
	af.register(fs, "180d", "table or json", "opened, sensitive or none")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	w, err := af.window(time.Now())
	switch {
	case err != nil:
	case len(pos) > 0:
		err = fmt.Errorf("unexpected argument %q", pos[0])
	case af.format != "table" && af.format != "json":
		err = fmt.Errorf("--format: %q is not table or json", af.format)
	case af.failOn != "none" && af.failOn != "opened" && af.failOn != "sensitive":
		err = fmt.Errorf("--fail-on: %q is not opened, sensitive or none", af.failOn)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit drift: %v\n", err)
		return 2
	}
	env, ok := openAudit("audit drift", af, false, stderr)
	if !ok {
		return 2
	}
	defer env.close()
	ctx, cancel := signalContext()
	defer cancel()
	apps, err := env.reader.PolicyApplications(ctx, w.To)
	var edges []query.EdgeSighting
	var days []query.DailyViolations
	if err == nil {
		edges, err = env.reader.EdgesFirstSeen(ctx, query.Window{From: audit.NewEdgesSince(apps, w), To: w.To})
	}
	if err == nil {
		days, err = env.reader.ViolationsPerDay(ctx, w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit drift: %v\n", err)
		return 2
	}
	d := audit.DriftOf(w, apps, edges, days)
	if af.format == "json" {
		err = audit.WriteJSON(stdout, d)
	} else {
		err = audit.WriteDriftTable(stdout, d)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit drift: %v\n", err)
		return 2
	}
	for _, v := range d.Versions {
		for _, c := range v.Changes {
			if c.Change == audit.Added && (af.failOn == "opened" || (af.failOn == "sensitive" && c.DstSensitive)) {
				return 1
			}
		}
	}
	return 0
}
