package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAuditHelp(t *testing.T) {
	for _, args := range [][]string{
		{"audit", "--help"}, {"audit", "recommend", "--help"}, {"audit", "simulate", "--help"},
		{"audit", "simulate", "draft.yaml", "-h"}, {"audit", "gaps", "--help"},
		{"audit", "identities", "--help"},
	} {
		res := runCLI(t, args...)
		if res.code != 0 {
			t.Errorf("flowaudit %s exited %d, want 0; stderr:\n%s", strings.Join(args, " "), res.code, res.stderr)
		}
		if !strings.Contains(res.stdout+res.stderr, "Usage: flowaudit audit") {
			t.Errorf("flowaudit %s printed no usage:\n%s%s", strings.Join(args, " "), res.stdout, res.stderr)
		}
	}
}

func TestAuditUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit"}, "Usage: flowaudit audit SUBCOMMAND"},
		{[]string{"audit", "nope"}, `unknown subcommand "nope"`},
		{[]string{"audit", "recommend", "--since", "7x"}, `--since: "7x" is not a duration`},
		{[]string{"audit", "recommend", "--granularity", "host"}, `--granularity: "host" is not segment or workload`},
		{[]string{"audit", "recommend", "--format", "xml"}, `--format: "xml" is not table, json, policy, nftables, networkpolicy or cilium`},
		{[]string{"audit", "recommend", "--identity-share", "1.5"}, "--identity-share: 1.5 is not in (0, 1]"},
		{[]string{"audit", "recommend", "extra"}, `unexpected argument "extra"`},
		{[]string{"audit", "recommend"}, "no policy.file"},
		{[]string{"audit", "simulate"}, "give exactly one DRAFT policy file"},
		{[]string{"audit", "simulate", "missing.yaml", "--since", "1d"}, "draft: unable to read policy file"},
		{[]string{"audit", "simulate", "a.yaml", "--format", "csv"}, `--format: "csv" is not table or json`},
		{[]string{"audit", "gaps", "--format", "csv"}, `--format: "csv" is not table or json`},
		{[]string{"audit", "gaps", "--fail-on", "severe"}, `--fail-on: "severe" is not low, medium, high, critical or none`},
		{[]string{"audit", "gaps", "--review-age", "x"}, `--review-age: "x" is not a duration`},
		{[]string{"audit", "gaps", "extra"}, `unexpected argument "extra"`},
		{[]string{"audit", "gaps"}, "no policy.file"},
		{[]string{"audit", "identities", "--format", "xml"}, `--format: "xml" is not table, json or csv`},
		{[]string{"audit", "identities", "--fail-on", "all"}, `--fail-on: "all" is not violation, dormant, unattributed or none`},
		{[]string{"audit", "identities", "extra"}, `unexpected argument "extra"`},
		{[]string{"audit", "identities", "--since", "0d"}, `--since: "0d" must be positive`},
		{[]string{"audit", "identities"}, "no policy.file"},
	} {
		res := runCLI(t, tc.args...)
		if res.code != 2 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("flowaudit %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), res.code, res.stderr, tc.want)
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		pos   []string
		since string
	}{
		{[]string{"draft.yaml", "--since", "1d"}, []string{"draft.yaml"}, "1d"},
		{[]string{"--since", "2d", "draft.yaml"}, []string{"draft.yaml"}, "2d"},
		{[]string{"a", "--since=3d", "b"}, []string{"a", "b"}, "3d"},
		{[]string{"--", "--since"}, []string{"--since"}, "7d"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		since := fs.String("since", "7d", "")
		pos, code, done := parseInterspersed(fs, tc.args)
		if done || code != 0 {
			t.Fatalf("%v: done %v code %d", tc.args, done, code)
		}
		if d := cmp.Diff(pos, tc.pos); d != "" || *since != tc.since {
			t.Errorf("%v: positionals (-got +want):\n%s since %q, want %q", tc.args, d, *since, tc.since)
		}
	}
}

func TestParseSince(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"7d": 7 * 24 * time.Hour, "1w": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute,
	} {
		if got, err := parseSince(in); err != nil || got != want {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "-1d", "0s", "7x", "1.5d"} {
		if _, err := parseSince(in); err == nil {
			t.Errorf("parseSince(%q): no error", in)
		}
	}
}
