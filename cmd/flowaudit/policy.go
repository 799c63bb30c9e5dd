package main

import (
	"fmt"
	"io"
	"os"

	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/policy/enforce"
)

func cmdPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, policyUsage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprintln(stderr, policyUsage)
		return 0
	case "validate":
		return cmdPolicyValidate(args[1:], stdout, stderr)
	case "export":
		return cmdPolicyExport(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "flowaudit policy: unknown subcommand %q\n\n%s\n", args[0], policyUsage)
	return 2
}

const policyUsage = `Usage: flowaudit policy validate FILE
       flowaudit policy export --format nftables FILE

validate  check a policy file; every error names its line and field
export    the policy as enforceable rules (an nftables ruleset)

Run "flowaudit policy SUBCOMMAND --help" for the flags of each.`

func cmdPolicyValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("policy validate", "FILE", `
Check a policy file (segments, inventory, rules; see README.md): every
error is reported with its line and field, and the exit code is 1 when
there is any. A valid file prints a one-line summary.`, stderr)
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "flowaudit policy validate: give exactly one policy FILE")
		return 2
	}
	summary, err := policy.Validate(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK: %s\n", pos[0], summary)
	return 0
}

func cmdPolicyExport(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("policy export", "--format nftables [--out FILE] FILE", `
Translate a policy file into rules an enforcement point loads:

  nftables       a ruleset for a router forwarding between the segments
                 (table inet flowaudit, chain forward, default policy from
                 "default:", one accept or drop per rule over CIDR sets);
                 load it with: nft -f OUT

Staged rules are not exported, and conditions a target cannot enforce
(identities at L3/L4) are dropped; each such case is printed on stderr
as a note. The output is deterministic.`, stderr)
	format := fs.String("format", "", "nftables (required)")
	out := fs.String("out", "", "write to this file instead of stdout")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "flowaudit policy export: give exactly one policy FILE")
		return 2
	}
	p, err := policy.Load(pos[0])
	if err == nil {
		_, err = policy.Compile(p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	var text string
	var notes []string
	switch *format {
	case "nftables":
		text, notes = enforce.Nftables(p, pos[0])
	case "":
		fmt.Fprintln(stderr, "flowaudit policy export: --format is required: nftables")
		return 2
	default:
		fmt.Fprintf(stderr, "flowaudit policy export: --format %q is not nftables\n", *format)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit policy export: %v\n", err)
		return 1
	}
	for _, n := range notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	if *out != "" {
		if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
			fmt.Fprintf(stderr, "flowaudit policy export: --out: %v\n", err)
			return 1
		}
		return 0
	}
	_, _ = io.WriteString(stdout, text)
	return 0
}
