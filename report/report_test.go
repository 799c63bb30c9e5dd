package report

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

func TestDefaultConfiguration(t *testing.T) {
	c := DefaultConfiguration()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.Dir != "./var/reports" || c.Schedule != "" || len(c.Frameworks) != 1 || c.Frameworks[0] != PCIDSS4 || c.SigningKey != "" {
		t.Errorf("defaults differ from DESIGN.md: %+v", c)
	}
}

func TestConfigurationErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		cfg  Configuration
		want string
	}{
		{Configuration{Dir: "", Frameworks: []string{PCIDSS4}, Since: "90d"}, "report.dir"},
		{Configuration{Dir: "d", Schedule: "every day", Frameworks: []string{PCIDSS4}, Since: "90d"}, "report.schedule"},
		{Configuration{Dir: "d", Frameworks: []string{"pci"}, Since: "90d"}, "report.frameworks[0]"},
		{Configuration{Dir: "d", Frameworks: []string{SOC2, SOC2}, Since: "90d"}, "report.frameworks[1]"},
		{Configuration{Dir: "d", Frameworks: []string{SOC2}, Since: "soon"}, "report.since"},
		{Configuration{Dir: "d", Frameworks: []string{SOC2}, Since: "1d", SigningKey: "/nonexistent/key.pem"}, "report.signing_key"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

const testPolicy = `
segments:
  - name: web
    cidrs: [10.1.0.0/16]
  - name: db
    cidrs: [10.2.0.0/16]
    tags: [pci-cde]
rules:
  - name: web-to-db
    from: [web]
    to: [db]
    ports: ["5432/tcp"]
    owner: payments
    justification: "orders"
    review_by: 2030-01-01
  - name: wide
    from: [external]
    to: [web]
    ports: ["tcp"]
default: deny
`

func testInputs(t *testing.T) Inputs {
	p, err := policy.Parse([]byte(testPolicy), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	return Inputs{
		Framework: PCIDSS4, GeneratedAt: at, Window: query.Window{From: at.Add(-24 * time.Hour), To: at}, Policy: m,
		Services: []query.ServiceRow{
			{Client: "web", Server: "db", Identity: "svc-web", Port: 5432, Proto: 6, Verdict: "allowed", Rule: "web-to-db", Flows: 10, Bytes: 100},
			{Client: "web", Server: "db", Identity: "", Port: 22, Proto: 6, Verdict: "violation", Flows: 2, Bytes: 20},
			{Client: "db", Server: "external", Identity: "svc-db", Port: 443, Proto: 6, Verdict: "violation", Flows: 3, Bytes: 30},
			{Client: "web", Server: "web", Port: 80, Proto: 6, Verdict: "intra_segment", Flows: 7, Bytes: 70},
		},
		FailedAccess: []query.FailedAccess{{Source: "sshd", User: "root", SrcAddr: "10.1.0.9", Outcome: "failure", Attempts: 4}},
		Retention:    []query.Retained{{Table: "flows", Rows: 22, OldestDay: at.Add(-24 * time.Hour).Truncate(24 * time.Hour)}},
	}
}

func TestBuildSummaryAndResults(t *testing.T) {
	p, err := Build(testInputs(t))
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Flows: 22, FlowsIntoCDE: 12, FlowsOutOfCDE: 3, Violations: 5, CDEViolations: 5, UnusedRules: 1,
		IdentitiesReachingCDE: 1, UnattributedIntoCDE: 2, FailedLogins: 4, OldestRetainedDay: "2026-11-30", RetainedDays: 2,
		ControlsMet: 2, ControlsFindings: 5, ControlsNotAssessable: 3}
	if diff := cmp.Diff(p.Report.Summary, want); diff != "" {
		t.Errorf("summary (-got +want):\n%s", diff)
	}
	results := map[string]string{}
	for _, c := range p.Report.Controls {
		results[c.ID] = c.Result
	}
	wantResults := map[string]string{
		"1.2.3/1.2.4": Met, "1.2.5": Findings, "1.2.7": Findings, "1.3.1/1.3.2": Findings, "1.4.x": NotAssessable,
		"7.2.4/7.2.5.1": Findings, "10.2.1/10.2.2": NotAssessable, "10.4.1": Met, "10.5.1": Findings, "11.4.5": NotAssessable,
	}
	if diff := cmp.Diff(results, wantResults); diff != "" {
		t.Errorf("results (-got +want):\n%s", diff)
	}
	wantEdges := []Edge{{Client: "db", Server: "external", Flows: 3, Bytes: 30, Violations: 3, CDE: true},
		{Client: "web", Server: "db", Flows: 12, Bytes: 120, Violations: 2, CDE: true}}
	if diff := cmp.Diff(p.Report.DataFlow.Edges, wantEdges); diff != "" {
		t.Errorf("data-flow edges (-got +want):\n%s", diff)
	}
}

func TestBuildUnknownFramework(t *testing.T) {
	in := testInputs(t)
	in.Framework = "hipaa"
	if _, err := Build(in); err == nil || !strings.Contains(err.Error(), "hipaa") {
		t.Errorf("Build(hipaa) = %v, want an error naming it", err)
	}
}

func TestWriteVerify(t *testing.T) {
	p, err := Build(testInputs(t))
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	dir := filepath.Join(t.TempDir(), "pack")
	w, err := Write(dir, p, key)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Signed || len(w.ManifestSHA256) != 64 {
		t.Errorf("written %+v", w)
	}
	if _, err := Write(dir, p, nil); err == nil {
		t.Error("Write into a non-empty directory succeeded")
	}
	v, err := Verify(dir, key.Public().(ed25519.PublicKey))
	if err != nil || !v.OK() || v.Signature != "valid" {
		t.Fatalf("untouched pack: %+v, %v", v, err)
	}
	for name, tamper := range map[string]func(){
		"added file": func() { _ = os.WriteFile(filepath.Join(dir, "evidence", "extra.csv"), []byte("x\n"), 0o644) },
		"changed":    func() { _ = os.WriteFile(filepath.Join(dir, "evidence", "rules.csv"), []byte("x\n"), 0o644) },
		"manifest":   func() { _ = os.WriteFile(filepath.Join(dir, FileManifest), []byte(""), 0o644) },
	} {
		tamper()
		v, err := Verify(dir, nil)
		if err != nil || v.OK() {
			t.Errorf("%s: verified %+v, %v", name, v, err)
		}
	}
}

func TestHTMLSelfContained(t *testing.T) {
	p, err := Build(testInputs(t))
	if err != nil {
		t.Fatal(err)
	}
	page, err := RenderHTML(p)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := ExternalURLs(page)
	if err != nil || len(ext) != 0 {
		t.Errorf("index.html refers outside the pack: %v %v", ext, err)
	}
	for _, want := range []string{"<svg", "1.2.3/1.2.4", "evidence/cde_inbound.csv", "CDE", "Executive summary"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	again, _ := RenderHTML(p)
	if string(again) != string(page) {
		t.Error("two renderings of one pack differ")
	}
	for _, bad := range []string{
		`<img src="https://cdn.example/x.png">`, `<div style="background:url(http://x/y.png)"></div>`,
		`<a href="//cdn.example/x">x</a>`, `<style>@import "https://fonts.example/css";</style>`,
		`<svg><image xlink:href="http://x/y.png"/></svg>`, `<script>fetch("/x")</script>`,
	} {
		ext, err := ExternalURLs([]byte("<!DOCTYPE html><html><body>" + bad + "</body></html>"))
		if err != nil || len(ext) == 0 {
			t.Errorf("ExternalURLs(%s) found nothing", bad)
		}
	}
}

// TestPDFRenders checks report.pdf with poppler: pdftoppm makes pages of
// it and pdftotext finds every section heading, the contents' page
// numbers and every number of the summary.
func TestPDFRenders(t *testing.T) {
	p, err := Build(testInputs(t))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := RenderPDF(p)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := RenderPDF(p)
	if !bytes.Equal(doc, again) {
		t.Error("two renderings of one pack differ")
	}
	text := PDFCheck(t, doc)
	for _, c := range p.Report.Controls {
		if !strings.Contains(text, c.ID+" "+c.Title) {
			t.Errorf("pdftotext finds no heading %q", c.ID+" "+c.Title)
		}
	}
	for _, row := range SummaryRows(p.Report.Summary) {
		if !strings.Contains(text, row[0]+" "+row[1]) {
			t.Errorf("pdftotext finds no summary line %q", row[0]+" "+row[1])
		}
	}
	if !strings.Contains(text, "Page 1 of ") || !strings.Contains(text, "Contents") {
		t.Errorf("no page numbers or contents:\n%s", text)
	}
}

func TestBuildWithAuditLayer(t *testing.T) {
	in := testInputs(t)
	in.Gaps = &audit.GapReport{Findings: []audit.Finding{{ID: "g1", Kind: audit.KindShadowedRule, Severity: "medium", Rule: "wide", Message: "wide is shadowed"}}}
	in.Identities = &audit.IdentityReview{Dormant: []audit.DormantEntitlement{{Identity: "bob", Rule: "web-to-db", From: []string{"web"}, To: []string{"db"}, Ports: []string{"5432/tcp"}}}}
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	var review, ids Check
	for _, c := range p.Report.Controls {
		switch c.ID {
		case "1.2.7":
			review = c.Checks[0]
		case "7.2.4/7.2.5.1":
			ids = c.Checks[0]
		}
	}
	if review.Numbers["gaps_shadowed_rule"] != 1 || !contains(review.Evidence, "evidence/gaps.csv") || !strings.Contains(strings.Join(review.Findings, "\n"), "wide is shadowed") {
		t.Errorf("rule review without the gaps finding: %+v", review)
	}
	if ids.Numbers["dormant_entitlements"] != 1 || !contains(ids.Evidence, "evidence/identity_review.csv") || !contains(ids.Evidence, "evidence/dormant_entitlements.csv") {
		t.Errorf("identity review without the dormant entitlement: %+v", ids)
	}
	if _, err := Write(filepath.Join(t.TempDir(), "pack"), p, nil); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestSegmentationTestsAndRetention(t *testing.T) {
	in := testInputs(t)
	at := in.GeneratedAt
	in.ProbeRuns = []query.ProbeRun{{RunID: "r1", Prober: "host-a", SrcSegments: []string{"web"}, Start: at.Add(-48 * time.Hour),
		End: at.Add(-47 * time.Hour), Attempts: 40, Pass: 38, Blocked: 2, TargetSegments: 2}}
	in.Retention = []query.Retained{{Table: "flows", Rows: 9, OldestDay: at.Add(-400 * 24 * time.Hour).Truncate(24 * time.Hour)}}
	check := func(in Inputs, id string) Check {
		p, err := Build(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Report.Controls {
			if c.ID == id {
				return c.Checks[0]
			}
		}
		t.Fatalf("no control %s", id)
		return Check{}
	}
	if c := check(in, "11.4.5"); c.Result != Met || c.Numbers["attempts"] != 40 {
		t.Errorf("11.4.5 with a clean run: %s %v (%s)", c.Result, c.Numbers, c.Reason)
	}
	if c := check(in, "10.5.1"); c.Result != Met || c.Numbers["retained_days"] != 401 {
		t.Errorf("10.5.1 with 400 days kept: %s %v (%s)", c.Result, c.Numbers, c.Reason)
	}
	in.RetentionTTL = 30 * 24 * time.Hour
	if c := check(in, "10.5.1"); c.Result != Findings || !strings.Contains(c.Reason, "clickhouse.retention") {
		t.Errorf("10.5.1 with a 30-day TTL: %s (%s)", c.Result, c.Reason)
	}
	in.ProbeRuns[0].Breach = 1
	if c := check(in, "11.4.5"); c.Result != Findings || len(c.Findings) != 1 || !strings.Contains(c.Findings[0], "host-a") {
		t.Errorf("11.4.5 with a breach: %s %v", c.Result, c.Findings)
	}
}
