package main

import (
	"fmt"
	"io"
	"os"

	netv1 "k8s.io/api/networking/v1"

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
	case "import":
		return cmdPolicyImport(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "flowaudit policy: unknown subcommand %q\n\n%s\n", args[0], policyUsage)
	return 2
}

const policyUsage = `Usage: flowaudit policy validate FILE
       flowaudit policy export --format nftables|networkpolicy|cilium FILE
       flowaudit policy import --format networkpolicy --inventory BASE FILE...

validate  check a policy file; every error names its line and field
export    the policy as enforceable rules (an nftables ruleset, Kubernetes
          NetworkPolicies, Cilium CiliumNetworkPolicies)
import    Kubernetes NetworkPolicies as a flowaudit policy, to audit them

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
	fs := newFlagSet("policy export", "--format nftables|networkpolicy|cilium [--out FILE] FILE", `
Translate a policy file into rules an enforcement point loads:

  nftables       a ruleset for a router forwarding between the segments
                 (table inet flowaudit, chain forward, default policy from
                 "default:", one accept or drop per rule over CIDR sets);
                 load it with: nft -f OUT
  networkpolicy  Kubernetes networking.k8s.io/v1 NetworkPolicies (YAML), one
                 namespace per segment: default deny, intra-namespace
                 allows, and per allow rule an ingress policy in the
                 destination namespace and an egress one in the source
  cilium         cilium.io/v2 CiliumNetworkPolicies (YAML): ingress per
                 rule and destination, deny rules as ingressDeny, ICMP
Staged rules are not exported, and conditions a target cannot enforce
(identities at L3/L4) are dropped; each such case is printed on stderr
as a note. The output is deterministic.`, stderr)
	format := fs.String("format", "", "nftables, networkpolicy or cilium (required)")
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
	case "networkpolicy":
		text, notes, err = enforce.NetworkPolicyYAML(p)
	case "cilium":
		text, notes, err = enforce.CiliumYAML(p)
	case "":
		fmt.Fprintln(stderr, "flowaudit policy export: --format is required: nftables, networkpolicy or cilium")
		return 2
	default:
		fmt.Fprintf(stderr, "flowaudit policy export: --format %q is not nftables, networkpolicy or cilium\n", *format)
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

func cmdPolicyImport(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("policy import", "--format networkpolicy --inventory BASE [--out FILE] FILE...", `
Read Kubernetes NetworkPolicies (YAML, several documents or a
NetworkPolicyList per file) and print the flowaudit policy they enforce,
so it can be audited (flowaudit audit simulate, policy export) as it is.
BASE is a flowaudit policy file giving the segments (one per namespace,
with the pod CIDRs) and the inventory of pod addresses with their labels;
its rules are ignored. Namespaces become segments, pod selectors label
selectors, ipBlocks the segment "external". What has no flowaudit form
(matchExpressions, named ports) is printed on stderr as a note.`, stderr)
	format := fs.String("format", "", "networkpolicy (required)")
	base := fs.String("inventory", "", "policy file with the segments and pod inventory (required)")
	out := fs.String("out", "", "write to this file instead of stdout")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	switch {
	case *format != "networkpolicy":
		fmt.Fprintf(stderr, "flowaudit policy import: --format %q: only networkpolicy is supported\n", *format)
		return 2
	case *base == "":
		fmt.Fprintln(stderr, "flowaudit policy import: --inventory BASE is required (a policy file with segments and pods)")
		return 2
	case len(pos) == 0:
		fmt.Fprintln(stderr, "flowaudit policy import: give at least one NetworkPolicy FILE")
		return 2
	}
	bp, err := policy.Load(*base)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	var nps []netv1.NetworkPolicy
	for _, path := range pos {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "flowaudit policy import: %v\n", err)
			return 1
		}
		got, err := enforce.DecodeNetworkPolicies(data, path)
		if err != nil {
			fmt.Fprintf(stderr, "flowaudit policy import: %v\n", err)
			return 1
		}
		nps = append(nps, got...)
	}
	p, notes := enforce.ImportNetworkPolicies(bp, nps)
	if _, err := policy.Compile(p); err != nil {
		fmt.Fprintf(stderr, "flowaudit policy import: %v\n", err)
		return 1
	}
	text, err := enforce.PolicyYAML(p, fmt.Sprintf("# Imported by flowaudit policy import from %d NetworkPolicies over %s.\n", len(nps), *base))
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit policy import: %v\n", err)
		return 1
	}
	for _, n := range notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	if *out != "" {
		if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
			fmt.Fprintf(stderr, "flowaudit policy import: --out: %v\n", err)
			return 1
		}
		return 0
	}
	_, _ = io.WriteString(stdout, text)
	return 0
}
