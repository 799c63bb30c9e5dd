package main

import (
	"fmt"
	"io"
	"time"

	"github.com/flowaudit/flowaudit/audit"
)

func cmdAuditIdentities(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit identities", "[--since 90d] [--identity NAME] [--format table|json|csv]", `
Review what every user and service account reached in the window: per
identity, each destination (segment and workload of the configured policy)
and service it reached, the rule that allowed it or that it was a
violation, flows, access events, first and last seen. Identities come from
the flows (the client end's login binding or inventory service account;
replies count for the connection they answer) and from successful access
events (sshd logins, gateway and web sessions), so a session into a
sensitive host counts even where no exporter sees the path.

Also reported: dormant entitlements (an identity listed in an enforced
allow rule's identities that never used that rule in the window) and the
share of cross-segment flows into sensitive segments (tagged sensitive or
pci-cde) that carried no identity.

--format csv writes one row per identity × destination × service with
empty reviewer, acknowledged and review_notes columns, for the periodic
access review of PCI DSS 7.2.4.`, stderr)
	var af auditFlags
	af.register(fs, "90d", "table, json or csv", "violation (an identity reached something no rule allows), dormant, unattributed or none")
	identity := fs.String("identity", "", "review this identity `name` only")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "flowaudit audit identities: unexpected argument %q\n", pos[0])
		return 2
	}
	w, err := af.window(time.Now())
	switch {
	case err != nil:
	case af.format != "table" && af.format != "json" && af.format != "csv":
		err = fmt.Errorf("--format: %q is not table, json or csv", af.format)
	case af.failOn != "none" && af.failOn != "violation" && af.failOn != "dormant" && af.failOn != "unattributed":
		err = fmt.Errorf("--fail-on: %q is not violation, dormant, unattributed or none", af.failOn)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit identities: %v\n", err)
		return 2
	}
	env, ok := openAudit("audit identities", af, true, stderr)
	if !ok {
		return 2
	}
	defer env.close()
	ctx, cancel := signalContext()
	defer cancel()
	edges, err := env.reader.IdentityEdges(ctx, w)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit identities: %v\n", err)
		return 2
	}
	sessions, err := env.reader.AccessSessions(ctx, w)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit identities: %v\n", err)
		return 2
	}
	rev := audit.ReviewIdentities(edges, sessions, env.policy, audit.IdentityOptions{Window: w, Identity: *identity})
	switch af.format {
	case "json":
		err = audit.WriteJSON(stdout, rev)
	case "csv":
		err = audit.WriteIdentityCSV(stdout, rev)
	default:
		err = audit.WriteIdentityTable(stdout, rev)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit identities: %v\n", err)
		return 2
	}
	switch {
	case af.failOn == "violation" && rev.Summary.ViolationRows > 0,
		af.failOn == "dormant" && rev.Summary.Dormant > 0,
		af.failOn == "unattributed" && rev.Unattributed.Flows > 0:
		return 1
	}
	return 0
}
