package main

import (
	"fmt"
	"io"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/policy"
)

func cmdAuditDiff(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit diff", "OLD.yaml NEW.yaml [--format table|json] [--fail-on added|removed|changes|none]", `
Compare two policy files by what they decide, not by their text: every
connection (client segment, workload or part of a segment × server end ×
port range × protocol × client identity) that one policy allows and the
other does not. "added" connections NEW allows and OLD did not, "removed"
the reverse. Rule names, order (where first-match does not change a
decision), comments and metadata make no difference. Ends are named in the
terms of the policy that allows the connection; identity "*" means any
client, "(other)" any identity neither policy names. Staged rules are
compared separately ("With staged rules enforced"). Reads no database.`, stderr)
	format := fs.String("format", "table", "output `format`: table or json")
	failOn := fs.String("fail-on", "none", "exit 1 when there are changes of this `kind`: added, removed, changes or none")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	var err error
	switch {
	case len(pos) != 2:
		err = fmt.Errorf("give exactly two policy files, OLD and NEW")
	case *format != "table" && *format != "json":
		err = fmt.Errorf("--format: %q is not table or json", *format)
	case *failOn != "none" && *failOn != audit.Added && *failOn != audit.Removed && *failOn != "changes":
		err = fmt.Errorf("--fail-on: %q is not added, removed, changes or none", *failOn)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit diff: %v\n", err)
		return 2
	}
	var ps [2]*policy.Policy
	for i, path := range pos {
		if ps[i], err = policy.Load(path); err != nil {
			fmt.Fprintf(stderr, "flowaudit audit diff: %s: %v\n", []string{"OLD", "NEW"}[i], err)
			return 2
		}
	}
	d, err := audit.DiffPolicies(ps[0], ps[1])
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit diff: %v\n", err)
		return 2
	}
	if *format == "json" {
		err = audit.WriteJSON(stdout, d)
	} else {
		err = audit.WriteDiffTable(stdout, d)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit diff: %v\n", err)
		return 2
	}
	s := d.Summary
	switch {
	case *failOn == audit.Added && s.Added > 0,
		*failOn == audit.Removed && s.Removed > 0,
		*failOn == "changes" && s.Added+s.Removed > 0:
		return 1
	}
	return 0
}
