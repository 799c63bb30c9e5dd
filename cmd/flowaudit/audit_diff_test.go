package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/audit"
)

func TestAuditDiffCLI(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(root, "deploy/scenario-policy.yaml")
	draft := filepath.Join(root, "deploy/demo-draft-strict.yaml")
	// One port more on one rule.
	text, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	wider := filepath.Join(t.TempDir(), "wider.yaml")
	edited := strings.Replace(string(text), `ports: ["8080/tcp"]`, `ports: ["8080/tcp", "8443/tcp"]`, 1)
	if edited == string(text) {
		t.Fatal("scenario policy has no 8080/tcp rule to widen")
	}
	if err := os.WriteFile(wider, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}

	res := runCLI(t, "audit", "diff", base, base, "--fail-on", "changes")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "Connections: 0 added, 0 removed\n") {
		t.Errorf("diff of a policy with itself: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}

	res = runCLI(t, "audit", "diff", "--format", "json", base, wider)
	if res.code != 0 {
		t.Fatalf("diff --format json: exit %d, stderr %s", res.code, res.stderr)
	}
	var d audit.PolicyDiff
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil {
		t.Fatalf("diff json: %v\n%s", err, res.stdout)
	}
	want := []audit.DiffChange{{Change: "added", SrcSegment: "web", DstSegment: "app", Ports: "8443/tcp", Proto: "tcp",
		PortLo: 8443, PortHi: 8443, Identity: "*", Before: "violation", After: "allowed",
		BeforeRules: []string{"-"}, AfterRules: []string{"web-to-app"}}}
	if diff := cmp.Diff(d.Changes, want); diff != "" || d.Summary != (audit.DiffSummary{Added: 1}) {
		t.Errorf("one port added: summary %+v, changes (-got +want):\n%s", d.Summary, diff)
	}

	res = runCLI(t, "audit", "diff", base, draft, "--fail-on", "removed")
	if res.code != 1 || !strings.Contains(res.stdout, "removed  web       db   5432/tcp  *         allowed (web-to-db-postgres)  violation") {
		t.Errorf("diff against the strict draft: exit %d (want 1), stdout:\n%s", res.code, res.stdout)
	}
	res = runCLI(t, "audit", "diff", base, draft, "--fail-on", "added")
	if res.code != 0 {
		t.Errorf("--fail-on added with nothing added: exit %d", res.code)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "diff", base}, "give exactly two policy files"},
		{[]string{"audit", "diff", base, base, "--format", "csv"}, `--format: "csv" is not table or json`},
		{[]string{"audit", "diff", base, base, "--fail-on", "all"}, `--fail-on: "all" is not added, removed, changes or none`},
		{[]string{"audit", "diff", base, "missing.yaml"}, "NEW: unable to read policy file"},
	} {
		res := runCLI(t, tc.args...)
		if res.code != 2 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("flowaudit %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), res.code, res.stderr, tc.want)
		}
	}
	res = runCLI(t, "audit", "diff", "--help")
	if res.code != 0 || !strings.Contains(res.stderr, "Usage: flowaudit audit diff OLD.yaml NEW.yaml") {
		t.Errorf("audit diff --help: exit %d, stderr %q", res.code, res.stderr)
	}
}
