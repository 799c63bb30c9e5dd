package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
)

// inProcess runs a flowaudit command in this test process (whose binary
// has the modern engine when built with -tags chdb, unlike the one
// TestMain builds).
func inProcess(t *testing.T, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := dispatch(args, &stdout, &stderr)
	return cliResult{stdout.String(), stderr.String(), code}
}

// TestFromArchiveSameAsClickHouse runs the labelled scenario through
// `flowaudit run` with archive.dir set, stops it, and asks audit
// recommend, identities, gaps, simulate and drift and report the same question of
// ClickHouse and, with --from-archive, of the Parquet archive (read by
// the embedded modern engine): the answers are identical.
func TestFromArchiveSameAsClickHouse(t *testing.T) {
	modernch.Open(t) // skips without the engine
	dir := filepath.Join(t.TempDir(), "archive")
	a := runAuditScenarioWith(t, identityScenarioPolicy(t), "archive:\n  dir: "+dir+"\n",
		simulate.ScenarioConfig{Seed: 5, Start: time.Now()}, 0, true)
	waitCount(t, a.ch, "SELECT toUInt64(count()) FROM flowaudit.access_events", a.tot.Lines, 60*time.Second)
	a.p.waitSinkDrained(60 * time.Second)
	a.p.Stop() // the archive writes its open files; detect its last alerts

	ask := func(args ...string) string {
		t.Helper()
		args = append(args, "--config", a.cfgPath, "--since", "1d", "--until", a.until)
		res := inProcess(t, args...)
		if res.code != 0 {
			t.Fatalf("flowaudit %s: exit %d\n%s", strings.Join(args, " "), res.code, res.stderr)
		}
		if strings.Contains(res.stderr, "note:") {
			t.Errorf("flowaudit %s: %s", strings.Join(args, " "), res.stderr)
		}
		return res.stdout
	}
	for _, q := range [][]string{
		{"audit", "recommend", "--format", "json"},
		{"audit", "identities", "--format", "json"},
		{"audit", "gaps", "--format", "json"},
		{"audit", "simulate", segmentsOnlyPolicy(t), "--format", "json"},
		{"audit", "drift", "--format", "json"},
	} {
		fromCH := ask(q...)
		start := time.Now()
		fromArchive := ask(append(q, "--from-archive", dir)...)
		took := time.Since(start)
		if d := cmp.Diff(fromArchive, fromCH); d != "" || len(fromCH) < 100 {
			t.Errorf("%s: the archive's answer differs from ClickHouse's (-archive +clickhouse):\n%s", strings.Join(q, " "), d)
		}
		t.Logf("%s: %d bytes of JSON, the same from both (%s from the archive)", strings.Join(q[:2], " "), len(fromCH), took.Round(time.Millisecond))
	}
	// The report's controls and numbers; the pack's id, time and folder
	// differ by construction.
	report := func(extra ...string) map[string]any {
		t.Helper()
		out := filepath.Join(t.TempDir(), "pack")
		var v struct {
			Report map[string]any `json:"report"`
		}
		if err := json.Unmarshal([]byte(ask(append([]string{"report", "--format", "json", "--store=false", "--out", out}, extra...)...)), &v); err != nil {
			t.Fatal(err)
		}
		delete(v.Report, "report_id")
		delete(v.Report, "generated_at")
		return v.Report
	}
	fromCH, fromArchive := report(), report("--from-archive", dir)
	if d := cmp.Diff(fromArchive, fromCH); d != "" {
		t.Errorf("report: the archive's pack differs from ClickHouse's (-archive +clickhouse):\n%s", d)
	}
	t.Logf("report summary from both: %v", fromCH["summary"])
}

// TestFromArchiveNeedsEngine: the binary built without -tags chdb
// refuses --from-archive with exit 2, naming the flag and the fix.
func TestFromArchiveNeedsEngine(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte("segments:\n  - name: web\n    cidrs: [10.1.0.0/16]\ndefault: deny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("policy:\n  file: "+pol+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"audit", "identities", "--from-archive", dir, "--config", cfg},
		{"audit", "recommend", "--from-archive", dir, "--config", cfg},
		{"report", "--from-archive", dir, "--config", cfg, "--store=false", "--out", filepath.Join(dir, "pack")},
	} {
		res := runCLI(t, args...)
		if res.code != 2 || !strings.Contains(res.stderr, "--from-archive") || !strings.Contains(res.stderr, "-tags chdb") {
			t.Errorf("flowaudit %s: exit %d, stderr %q; want 2 and an error naming --from-archive and -tags chdb", strings.Join(args, " "), res.code, res.stderr)
		}
	}
	res := runCLI(t, "audit", "recommend", "--help")
	if !strings.Contains(res.stderr, "-from-archive DIR") {
		t.Errorf("audit recommend --help does not document --from-archive:\n%s", res.stderr)
	}
}
