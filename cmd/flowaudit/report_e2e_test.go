package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/report"
)

// reportFixturePolicy is the scenario policy with review metadata on one
// rule and a rule no traffic uses.
func reportFixturePolicy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(scenarioPolicyPath(t))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "  - name: app-to-db\n", `  - name: legacy-ftp-to-db
    from: [app]
    to: [db]
    ports: ["21/tcp"]
    owner: payments
    justification: "nightly batch upload, to be retired"
    review_by: 2026-06-30
  - name: app-to-db
`, 1)
	path := filepath.Join(t.TempDir(), "report-policy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeSigningKey writes a fresh ed25519 key as PKCS #8 PEM (what openssl
// genpkey -algorithm ed25519 writes) and its public key beside it.
func writeSigningKey(t *testing.T) (priv, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	priv, pub = filepath.Join(dir, "signing.pem"), filepath.Join(dir, "signing.pub.pem")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pder, _ := x509.MarshalPKIXPublicKey(pk)
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func readCSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("%s: %v (%d records)", path, err, len(recs))
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			m[h] = r[i]
		}
		out = append(out, m)
	}
	return out
}

func sumColumn(t *testing.T, rows []map[string]string, col string) uint64 {
	var n uint64
	for _, r := range rows {
		v, err := strconv.ParseUint(r[col], 10, 64)
		if err != nil {
			t.Fatalf("column %s: %q: %v", col, r[col], err)
		}
		n += v
	}
	return n
}

// TestReportScenario is the acceptance test of flowaudit report: on the
// labelled scenario under a fixture policy, every number of report.json
// equals an independent query, the evidence files add up to them, the
// pack verifies with sha256sum -c and report verify (signed), and a
// tampered evidence file fails both.
func TestReportScenario(t *testing.T) {
	polPath := reportFixturePolicy(t)
	a := runAuditScenario(t, polPath, simulate.ScenarioConfig{Seed: 5, Start: time.Now(), NormalRate: 50}, 240, false)
	// Access events come through syslog beside the flows: wait for them.
	const countAccess = "SELECT toUInt64(count()) FROM flowaudit.access_events"
	got := waitCount(t, a.ch, countAccess, a.tot.Lines, 60*time.Second)
	t.Logf("access events %d of %d lines", got, a.tot.Lines)
	// Stop the pipeline so that no alert lands between the reports compared
	// below (detect flushes its open windows on shutdown).
	a.p.Stop()

	// One segmentation test run (as flowaudit probe stores it) for 11.4.5.
	if err := a.ch.Conn(t).Exec(context.Background(), `INSERT INTO flowaudit.probe_results
    (time, run_id, prober, src_addr, src_segment, dst_addr, dst_segment, dst_port, proto, expected, observed, result, rule, rtt_ms)
SELECT now() - 60, 'run-1', 'tester-1', IPv6StringToNum('::ffff:10.1.0.5'), 'web', IPv6StringToNum('::ffff:10.2.0.5'), 'db', 5432, 6, 'allow', 'open', 'pass', 'web-to-db-postgres', 3
UNION ALL
SELECT now() - 59, 'run-1', 'tester-1', IPv6StringToNum('::ffff:10.1.0.5'), 'web', IPv6StringToNum('::ffff:10.2.0.5'), 'db', 22, 6, 'deny', 'filtered', 'blocked', '', 2000`); err != nil {
		t.Fatal(err)
	}
	priv, pub := writeSigningKey(t)
	base, err := os.ReadFile(a.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "report.yaml")
	repDir := filepath.Join(t.TempDir(), "reports")
	if err := os.WriteFile(cfgPath, append(base, []byte(fmt.Sprintf("report:\n  dir: %s\n  signing_key: %s\n", repDir, priv))...), 0o644); err != nil {
		t.Fatal(err)
	}
	until, err := time.Parse(time.RFC3339, a.until)
	if err != nil {
		t.Fatal(err)
	}
	from := until.Add(-24 * time.Hour)
	out := filepath.Join(t.TempDir(), "pack")
	res := runCLI(t, "report", "--framework", "pci-dss-4", "--config", cfgPath, "--since", "1d", "--until", a.until, "--out", out)
	if res.code != 0 {
		t.Fatalf("flowaudit report: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	t.Logf("report:\n%s%s", res.stdout, res.stderr)
	var rep report.Report
	data, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err == nil {
		err = json.Unmarshal(data, &rep)
	}
	if err != nil {
		t.Fatalf("report.json: %v", err)
	}

	// index.html loads nothing from outside the pack.
	page, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if ext, err := report.ExternalURLs(page); err != nil || len(ext) > 0 {
		t.Errorf("index.html refers outside the pack: %v %v", ext, err)
	}
	for _, c := range rep.Controls {
		if !strings.Contains(string(page), c.ID) {
			t.Errorf("index.html has no section %s", c.ID)
		}
	}

	// report.pdf renders: pages by pdftoppm, every heading and summary
	// number by pdftotext.
	pdfText := pdfToText(t, filepath.Join(out, "report.pdf"))
	for _, c := range rep.Controls {
		if !strings.Contains(pdfText, c.ID+" "+c.Title) {
			t.Errorf("report.pdf: pdftotext finds no heading %q", c.ID+" "+c.Title)
		}
	}
	for _, row := range report.SummaryRows(rep.Summary) {
		if !strings.Contains(pdfText, row[0]+" "+row[1]) {
			t.Errorf("report.pdf: pdftotext finds no summary line %q", row[0]+" "+row[1])
		}
	}

	// Independent queries, written against flows and access_events.
	win := fmt.Sprintf("time_received >= toDateTime(%d) AND time_received < toDateTime(%d)", from.Unix(), until.Unix())
	q := func(sql string) uint64 { return a.ch.QueryUint64(t, sql) }
	// Service orientation: a reply (service_side src) belongs to the
	// connection its source end serves.
	const intoCDE = "((service_side != 'src' AND dst_segment = 'db' AND src_segment != 'db') OR (service_side = 'src' AND src_segment = 'db' AND dst_segment != 'db'))"
	const outOfCDE = "((service_side != 'src' AND src_segment = 'db' AND dst_segment != 'db') OR (service_side = 'src' AND dst_segment = 'db' AND src_segment != 'db'))"
	var rules []string
	for _, r := range mustMatcher(t, polPath).Policy().Rules {
		rules = append(rules, "'"+r.Name+"'")
	}
	var oldest string
	if err := a.ch.Conn(t).QueryRow(context.Background(), "SELECT toString(min(toDate(time_received))) FROM flowaudit.flows").Scan(&oldest); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{
		"flows":            q("SELECT toUInt64(count()) FROM flowaudit.flows WHERE " + win),
		"flows_into_cde":   q("SELECT toUInt64(count()) FROM flowaudit.flows WHERE " + win + " AND " + intoCDE),
		"flows_out_of_cde": q("SELECT toUInt64(count()) FROM flowaudit.flows WHERE " + win + " AND " + outOfCDE),
		"violations":       q("SELECT toUInt64(count()) FROM flowaudit.flows WHERE " + win + " AND verdict = 'violation'"),
		"unused_rules": q("SELECT toUInt64(count()) FROM (SELECT arrayJoin([" + strings.Join(rules, ", ") + "]) AS r) WHERE r NOT IN (SELECT rule FROM flowaudit.flows WHERE " +
			win + ")"),
		"identities_reaching_cde": q("SELECT toUInt64(uniqExact(if(service_side = 'src', dst_identity, src_identity))) FROM flowaudit.flows WHERE " + win +
			" AND " + intoCDE + " AND if(service_side = 'src', dst_identity, src_identity) != ''"),
		"failed_logins": q(fmt.Sprintf("SELECT toUInt64(count()) FROM flowaudit.access_events WHERE toDateTime(time) >= toDateTime(%d) AND toDateTime(time) < toDateTime(%d) AND outcome IN ('failure', 'denied')",
			from.Unix(), until.Unix())),
		"probe_runs": q(fmt.Sprintf("SELECT toUInt64(uniqExact(run_id)) FROM flowaudit.probe_results WHERE time >= toDateTime(%d) AND time < toDateTime(%d)",
			until.Add(-report.ProbeHistory).Unix(), until.Unix())),
	}
	s := rep.Summary
	gotNums := map[string]uint64{"flows": s.Flows, "flows_into_cde": s.FlowsIntoCDE, "flows_out_of_cde": s.FlowsOutOfCDE,
		"violations": s.Violations, "unused_rules": s.UnusedRules, "identities_reaching_cde": s.IdentitiesReachingCDE, "failed_logins": s.FailedLogins,
		"probe_runs": s.ProbeRuns}
	t.Logf("summary %+v; independent %v, oldest %s", s, want, oldest)
	for k, w := range want {
		if gotNums[k] != w {
			t.Errorf("report.json summary %s = %d, an independent query says %d", k, gotNums[k], w)
		}
	}
	if s.OldestRetainedDay != oldest {
		t.Errorf("oldest_retained_day = %q, want %q", s.OldestRetainedDay, oldest)
	}
	for k, w := range want {
		if w == 0 && k != "violations" {
			t.Errorf("the scenario gives %s = 0: the test proves nothing about it", k)
		}
	}
	if s.Flows != a.tot.Flows {
		t.Errorf("report counts %d flows, the scenario sent %d", s.Flows, a.tot.Flows)
	}
	if len(rep.Controls) != 10 || rep.Framework != "pci-dss-4" || strings.Join(rep.CDESegments, ",") != "db" {
		t.Errorf("report: %d controls, framework %q, CDE %v; want 10, pci-dss-4, [db]", len(rep.Controls), rep.Framework, rep.CDESegments)
	}
	// Every number is the sum of its evidence rows.
	ev := func(name string) []map[string]string { return readCSV(t, filepath.Join(out, "evidence", name)) }
	for _, c := range []struct {
		file, col string
		want      uint64
	}{
		{"cde_inbound.csv", "flows", s.FlowsIntoCDE},
		{"cde_outbound.csv", "flows", s.FlowsOutOfCDE},
		{"violations.csv", "flows", s.Violations},
		{"failed_access.csv", "attempts", s.FailedLogins},
	} {
		if got := sumColumn(t, ev(c.file), c.col); got != c.want {
			t.Errorf("evidence/%s: %s sum to %d, the summary says %d", c.file, c.col, got, c.want)
		}
	}
	var unused uint64
	for _, r := range ev("rules.csv") {
		if r["hits"] == "0" {
			unused++
		}
		if r["rule"] == "legacy-ftp-to-db" && r["hits"] != "0" {
			t.Errorf("legacy-ftp-to-db has hits %s, the scenario never uses 21/tcp", r["hits"])
		}
	}
	if unused != s.UnusedRules {
		t.Errorf("rules.csv: %d rules with no hits, the summary says %d", unused, s.UnusedRules)
	}
	ids := map[string]bool{}
	for _, r := range ev("identities.csv") {
		if r["identity"] != "" {
			ids[r["identity"]] = true
		}
	}
	if uint64(len(ids)) != s.IdentitiesReachingCDE {
		t.Errorf("identities.csv: %d identities, the summary says %d", len(ids), s.IdentitiesReachingCDE)
	}

	// A window on whole hours is read from the rollups: the same numbers.
	aligned := until.Truncate(time.Hour).Add(time.Hour)
	out2 := filepath.Join(t.TempDir(), "pack-aligned")
	res = runCLI(t, "report", "--config", cfgPath, "--since", "2d", "--until", aligned.Format(time.RFC3339), "--out", out2, "--format", "json", "--store=false")
	if res.code != 0 {
		t.Fatalf("flowaudit report (aligned): exit %d\n%s", res.code, res.stderr)
	}
	var res2 struct {
		Report report.Report `json:"report"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &res2); err != nil {
		t.Fatal(err)
	}
	s2 := res2.Report.Summary
	s2.ControlsMet, s2.ControlsFindings, s2.ControlsNotAssessable = s.ControlsMet, s.ControlsFindings, s.ControlsNotAssessable
	if s2 != s {
		t.Errorf("summary over whole hours (rollup) differs:\n got %+v\nwant %+v", s2, s)
	}

	// The pack verifies, with sha256sum and with report verify (signed).
	sha := func(dir string) (string, error) {
		cmd := exec.Command("sha256sum", "-c", "--strict", report.FileManifest)
		cmd.Dir = dir
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if outp, err := sha(out); err != nil {
		t.Errorf("sha256sum -c on an untouched pack: %v\n%s", err, outp)
	}
	if v := runCLI(t, "report", "verify", out, "--key", pub); v.code != 0 || !strings.Contains(v.stdout, "signature valid") {
		t.Errorf("report verify of an untouched pack: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	other, _ := writeSigningKey(t)
	if v := runCLI(t, "report", "verify", out, "--key", other); v.code != 1 {
		t.Errorf("report verify with another key: exit %d, want 1\n%s", v.code, v.stdout)
	}
	// One changed evidence row fails both.
	path := filepath.Join(out, "evidence", "cde_inbound.csv")
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), ",db,", ",web,", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if outp, err := sha(out); err == nil || !strings.Contains(outp, "cde_inbound.csv: FAILED") {
		t.Errorf("sha256sum -c on a tampered pack: %v\n%s", err, outp)
	}
	v := runCLI(t, "report", "verify", out, "--format", "json")
	var ver report.Verification
	_ = json.Unmarshal([]byte(v.stdout), &ver)
	if v.code != 1 || len(ver.Problems) != 1 || !strings.Contains(ver.Problems[0], "evidence/cde_inbound.csv") {
		t.Errorf("report verify of a tampered pack: exit %d, problems %v\n%s", v.code, ver.Problems, v.stderr)
	}

	// The pack is indexed in reports.
	if n := a.ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.reports WHERE report_id = ?", rep.ReportID); n != 1 {
		t.Errorf("reports has %d rows for %s, want 1", n, rep.ReportID)
	}
	// SOC 2 and ISO 27001 reuse the same evidence under their headings.
	for fw, ids := range map[string][]string{"soc2": {"CC6.1", "CC6.6", "CC7.2"}, "iso27001": {"A.8.20", "A.8.21", "A.8.22", "A.8.15", "A.5.18"}} {
		dir := filepath.Join(t.TempDir(), fw)
		r := runCLI(t, "report", "--framework", fw, "--config", cfgPath, "--since", "1d", "--until", a.until, "--out", dir, "--format", "json", "--store=false")
		var got struct {
			Report report.Report `json:"report"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil {
			t.Fatalf("report --framework %s: exit %d\n%s", fw, r.code, r.stderr)
		}
		var gotIDs []string
		for _, c := range got.Report.Controls {
			gotIDs = append(gotIDs, c.ID)
		}
		if strings.Join(gotIDs, " ") != strings.Join(ids, " ") {
			t.Errorf("%s controls %v, want %v", fw, gotIDs, ids)
		}
		gs := got.Report.Summary
		gs.ControlsMet, gs.ControlsFindings, gs.ControlsNotAssessable = s.ControlsMet, s.ControlsFindings, s.ControlsNotAssessable
		if gs != s {
			t.Errorf("%s summary differs from pci-dss-4's: %+v", fw, gs)
		}
	}
}

// pdfToText turns the PDF at path into page images (pdftoppm, poppler)
// and returns its text (pdftotext) with whitespace folded.
func pdfToText(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("pdftoppm", "-r", "30", "-png", path, filepath.Join(dir, "page")).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm %s: %v\n%s (install poppler-utils)", path, err, out)
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "page*.png"))
	if len(pages) < 3 {
		t.Errorf("pdftoppm made %d pages of %s", len(pages), path)
	}
	text, err := exec.Command("pdftotext", "-layout", path, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext %s: %v", path, err)
	}
	return strings.Join(strings.Fields(string(text)), " ")
}
