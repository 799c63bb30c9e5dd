package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
	"github.com/flowaudit/flowaudit/sink"
)

// gapFlow is one connection of the gaps fixture: flows from client to
// server on port/tcp in each listed hour after the fixture's start.
type gapFlow struct {
	client, server string
	port           uint16
	hours          []int
	fwAction       string
}

// The traffic of testdata/gaps-policy.yaml; see the comments there.
var gapTraffic = []gapFlow{
	{"198.51.100.7", "10.1.0.10", 443, []int{0}, ""},
	{"192.168.50.7", "10.1.0.10", 443, []int{0}, ""}, // UNLABELLED_SPACE
	{"10.1.0.10", "10.3.0.10", 8080, []int{0, 1}, ""},
	{"10.3.0.10", "10.2.0.10", 5432, []int{0}, ""},
	{"10.5.0.1", "10.3.0.10", 8080, []int{0}, ""},
	{"10.6.0.1", "10.3.0.10", 8080, []int{1}, ""},
	{"203.0.113.9", "10.4.0.10", 443, []int{0}, ""},
	{"10.9.0.1", "10.4.0.10", 8443, []int{0}, ""},
	{"10.9.0.1", "10.1.0.10", 22, []int{0}, ""},
	{"10.9.0.2", "10.3.0.10", 22, []int{2}, ""},
	{"10.1.0.10", "10.3.0.10", 9100, []int{0}, ""},
	{"10.7.0.5", "10.2.0.10", 22, []int{1}, "forwarded"}, // ENV_CROSSING, ENFORCEMENT_GAP
	{"10.1.0.10", "10.2.0.10", 3306, []int{0, 1, 2}, ""}, // VIOLATION_HOTSPOT
}

// gapWant is the one finding of each kind the fixture holds: rule|segment.
var gapWant = map[string]string{
	"UNUSED_RULE":           "backup|",
	"SHADOWED_RULE":         "no-ops-pay-admin|",
	"REDUNDANT_RULE":        "no-dev-db|",
	"BROAD_PORTS":           "ops-pay|",
	"BROAD_PEERS":           "metrics|",
	"SILENT_SEGMENT":        "|legacy",
	"OVERSEGMENTED":         "|branch-a",
	"UNDERSEGMENTED":        "|ops",
	"UNLABELLED_SPACE":      "|external",
	"EXPOSED_SENSITIVE":     "|pay",
	"VIOLATION_HOTSPOT":     "|db",
	"ENV_CROSSING":          "|dev",
	"LATERAL_PATH":          "|db",
	"MISSING_JUSTIFICATION": "metrics|",
	"OVERDUE_REVIEW":        "web-app|",
	"ENFORCEMENT_GAP":       "no-dev-db|db",
}

// setupGapsFixture fills a fresh ClickHouse with the fixture's flows, as
// the enricher labels and decides them, and one policy version applied
// 200 days before the window's end; it returns the config file and the
// --until of the window.
func setupGapsFixture(t *testing.T) (string, string) {
	t.Helper()
	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	ctx := context.Background()
	if _, err := sink.Migrate(ctx, conn, "flowaudit", 0, nil); err != nil {
		t.Fatal(err)
	}
	policyPath, err := filepath.Abs("testdata/gaps-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := mustMatcher(t, policyPath)
	start := time.Now().UTC().Truncate(time.Hour).Add(-5 * time.Hour)
	var rows []string
	sport := uint16(40000)
	for _, f := range gapTraffic {
		c, s := netip.MustParseAddr(f.client), netip.MustParseAddr(f.server)
		src, dst := m.Lookup(schemas.AddrFromNetip(c)), m.Lookup(schemas.AddrFromNetip(s))
		k := policy.FlowKey{Src: src, Dst: dst, SrcPort: sport, DstPort: f.port, Proto: 6, ServiceSide: schemas.ServiceDst}
		v, rule := m.Decide(&k)
		for _, h := range f.hours {
			rows = append(rows, fmt.Sprintf(`SELECT toDateTime(%d) AS time_received, IPv6StringToNum('::ffff:%s') AS src_addr, IPv6StringToNum('::ffff:%s') AS dst_addr,
  toUInt16(%d) AS src_port, toUInt16(%d) AS dst_port, toUInt16(%d) AS service_port, toUInt8(6) AS proto, toUInt64(1000) AS bytes, toUInt64(10) AS packets,
  '%s' AS src_segment, '%s' AS dst_segment, '%s' AS src_workload, '%s' AS dst_workload, '%s' AS verdict, '%s' AS rule,
  '%s' AS staged_verdict, '%s' AS staged_rule, 'dst' AS service_side, '%s' AS fw_action`,
				start.Add(time.Duration(h)*time.Hour+10*time.Minute).Unix(), c, s, sport, f.port, f.port,
				src.Segment, dst.Segment, src.Workload, dst.Workload, v, rule, v, rule, f.fwAction))
			sport++
		}
	}
	q := `INSERT INTO flowaudit.flows (time_received, src_addr, dst_addr, src_port, dst_port, service_port, proto, bytes, packets,
  src_segment, dst_segment, src_workload, dst_workload, verdict, rule, staged_verdict, staged_rule, service_side, fw_action) ` +
		strings.Join(rows, " UNION ALL ")
	if err := conn.Exec(ctx, q); err != nil {
		t.Fatalf("insert flows: %v", err)
	}
	until := start.Add(4 * time.Hour)
	content, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	lit := strings.NewReplacer(`\`, `\\`, "'", `\'`, "\n", `\n`)
	if err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO flowaudit.policy_versions (version, loaded_at, path, content, host, summary)
SELECT '%s', toDateTime(%d), '%s', '%s', 'enricher-1', 'fixture'`,
		schemas.PolicyVersionOf(content), until.Add(-200*24*time.Hour).Unix(), lit.Replace(policyPath), lit.Replace(string(content)))); err != nil {
		t.Fatalf("insert policy version: %v", err)
	}
	cfg := filepath.Join(t.TempDir(), "flowaudit.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("clickhouse:\n  addr: %s\npolicy:\n  file: %s\n", ch.Addr, policyPath)), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, until.Format(time.RFC3339)
}

type gapsJSON struct {
	Findings []struct {
		ID       string          `json:"id"`
		Kind     string          `json:"kind"`
		Severity string          `json:"severity"`
		Rule     string          `json:"rule"`
		Segment  string          `json:"segment"`
		Message  string          `json:"message"`
		Evidence json.RawMessage `json:"evidence"`
	} `json:"findings"`
}

func TestAuditGapsFixture(t *testing.T) {
	cfg, until := setupGapsFixture(t)
	args := []string{"audit", "gaps", "--config", cfg, "--since", "90d", "--until", until}
	res := runCLI(t, append(args, "--format", "json")...)
	if res.code != 0 {
		t.Fatalf("audit gaps --format json: exit %d\n%s", res.code, res.stderr)
	}
	var got gapsJSON
	dec := json.NewDecoder(strings.NewReader(res.stdout))
	dec.DisallowUnknownFields()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(res.stdout), &raw); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, res.stdout)
	}
	if err := json.Unmarshal(raw["findings"], &got.Findings); err != nil {
		t.Fatal(err)
	}
	correct, seen := 0, map[string]bool{}
	for _, f := range got.Findings {
		key := f.Rule + "|" + f.Segment
		switch {
		case gapWant[f.Kind] == key && !seen[f.Kind]:
			correct++
			seen[f.Kind] = true
		default:
			t.Errorf("unexpected finding %s %s (%s): %s\n  evidence %s", f.ID, f.Kind, key, f.Message, f.Evidence)
		}
		if !strings.HasPrefix(f.ID, f.Kind+"-") || f.Severity == "" || f.Message == "" || len(f.Evidence) < 3 {
			t.Errorf("finding %+v lacks an id of its kind, a severity, a message or evidence", f)
		}
	}
	for kind, key := range gapWant {
		if !seen[kind] {
			t.Errorf("missing finding %s (%s)", kind, key)
		}
	}
	precision := float64(correct) / float64(max(len(got.Findings), 1))
	recall := float64(correct) / float64(len(gapWant))
	t.Logf("audit gaps on the fixture: %d findings, %d expected, precision %.2f, recall %.2f", len(got.Findings), len(gapWant), precision, recall)
	if precision != 1 || recall != 1 {
		t.Errorf("precision %.2f, recall %.2f; want 1.00 and 1.00\n%s", precision, recall, res.stdout)
	}

	// Stable IDs: a second run, with the window's start moved, gives the
	// same IDs.
	res2 := runCLI(t, "audit", "gaps", "--config", cfg, "--since", "30d", "--until", until, "--format", "json")
	var again gapsJSON
	if err := json.Unmarshal([]byte(res2.stdout), &again); err != nil {
		t.Fatalf("second run: %v\n%s", err, res2.stderr)
	}
	ids := func(g gapsJSON) []string {
		var out []string
		for _, f := range g.Findings {
			out = append(out, f.ID)
		}
		return out
	}
	if a, b := strings.Join(ids(got), " "), strings.Join(ids(again), " "); a != b {
		t.Errorf("IDs changed between runs:\n%s\n%s", a, b)
	}

	// The table: a summary line, a header, one row per finding.
	tab := runCLI(t, args...)
	if tab.code != 0 {
		t.Fatalf("audit gaps (table): exit %d\n%s", tab.code, tab.stderr)
	}
	lines := strings.Split(strings.TrimSpace(tab.stdout), "\n")
	if len(lines) != 2+len(gapWant) || !strings.HasPrefix(lines[0], "Findings (window ") ||
		!strings.HasPrefix(lines[1], "SEVERITY") {
		t.Errorf("table has %d lines, want %d:\n%s", len(lines), 2+len(gapWant), tab.stdout)
	}
	for _, f := range got.Findings {
		if !strings.Contains(tab.stdout, f.ID) {
			t.Errorf("table lacks %s", f.ID)
		}
	}
	t.Logf("audit gaps table:\n%s", tab.stdout)

	// --fail-on: exit 1 at or above a severity present, 0 otherwise.
	for _, tc := range []struct {
		failOn string
		code   int
	}{{"critical", 1}, {"low", 1}, {"none", 0}} {
		if r := runCLI(t, append(args, "--fail-on", tc.failOn)...); r.code != tc.code {
			t.Errorf("--fail-on %s: exit %d, want %d\n%s", tc.failOn, r.code, tc.code, r.stderr)
		}
	}
}
