package main

import (
	"fmt"
	"io"

	"github.com/flowaudit/flowaudit/policy"
)

func cmdPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "validate" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintln(stderr, policyUsage)
			return 0
		}
		fmt.Fprintln(stderr, policyUsage)
		return 2
	}
	fs := newFlagSet("policy validate", "FILE", policyUsage, stderr)
	if err := fs.Parse(args[1:]); err != nil {
		if err.Error() == "flag: help requested" {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "flowaudit policy validate: give exactly one policy FILE")
		return 2
	}
	summary, err := policy.Validate(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK: %s\n", fs.Arg(0), summary)
	return 0
}

const policyUsage = `Usage: flowaudit policy validate FILE

Check a policy file (segments, inventory, allow rules; see README.md): every
error is reported with its line and field, and the exit code is 1 when
there is any. A valid file prints a one-line summary.`
