package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLIProbeUsageErrors(t *testing.T) {
	dir := t.TempDir()
	noPolicy := filepath.Join(dir, "none.yaml")
	if err := os.WriteFile(noPolicy, []byte("probe:\n  rate: 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("segments:\n  - name: db\n    cidrs: [10.71.3.0/24]\nrules: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withPolicy := filepath.Join(dir, "with.yaml")
	if err := os.WriteFile(withPolicy, []byte("policy:\n  file: "+pol+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badRate := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badRate, []byte("probe:\n  rate: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"probe", "--format", "xml", "--config", noPolicy}, `--format "xml": use table or json`},
		{[]string{"probe", "--config", noPolicy}, "policy.file is not set"},
		{[]string{"probe", "--config", badRate}, "probe.rate: 0 is not in (0, 10000]"},
		{[]string{"probe", "--from-segment", "db", "--store=false", "--config", withPolicy}, "no address in segment db"},
	} {
		res := runCLI(t, tc.args...)
		if res.code != 2 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("flowaudit %s: exit %d, stderr %q; want 2 and %q", strings.Join(tc.args, " "), res.code, res.stderr, tc.want)
		}
	}
}
