package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/report"
	"github.com/flowaudit/flowaudit/sink"
)

func cmdReport(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "verify" {
		return cmdReportVerify(args[1:], stdout, stderr)
	}
	fs := newFlagSet("report", "--framework pci-dss-4|soc2|iso27001 [--since 90d] [--out DIR] [--format table|json]", `
Write a compliance evidence pack from what flowaudit observed over the
window: index.html (one self-contained page), report.pdf, report.json
(stable fields), evidence/*.csv (the rows behind every number) and
MANIFEST.sha256 over every file ("sha256sum -c MANIFEST.sha256" checks it),
signed into MANIFEST.sha256.sig when report.signing_key is set.

Each control of the framework says what was checked, the result (met,
findings or not_assessable, and why), its numbers and its evidence files.
The CDE is the segments tagged pci-cde (or cde) in the policy.

The pack is written to --out (default report.dir/REPORT_ID) and indexed
in the reports table. "flowaudit report verify DIR" checks a pack.

Exit codes: 0 written, 1 written with a control at or above --fail-on,
2 usage or runtime error.`, stderr)
	var af auditFlags
	af.register(fs, "90d", "table or json (the summary printed; the pack is always complete)", "findings, not_assessable or none")
	framework := fs.String("framework", report.PCIDSS4, "`framework`: "+strings.Join(report.Frameworks(), ", "))
	out := fs.String("out", "", "`directory` to write the pack into (new or empty; default report.dir/REPORT_ID)")
	store := fs.Bool("store", true, "index the pack in the reports table")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "flowaudit report: unexpected argument %q (subcommand: verify)\n", pos[0])
		return 2
	}
	w, err := af.window(time.Now())
	switch {
	case err != nil:
	case report.FrameworkTitle(*framework) == "":
		err = fmt.Errorf("--framework: %q is not one of %s", *framework, strings.Join(report.Frameworks(), ", "))
	case af.format != "table" && af.format != "json":
		err = fmt.Errorf("--format: %q is not table or json", af.format)
	case af.failOn != "none" && af.failOn != report.Findings && af.failOn != report.NotAssessable:
		err = fmt.Errorf("--fail-on: %q is not findings, not_assessable or none", af.failOn)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit report: %v\n", err)
		return 2
	}
	cfg, ok := loadConfig(af.config, stderr)
	if !ok {
		return 2
	}
	ctx, cancel := signalContext()
	defer cancel()
	res, err := writeReport(ctx, cfg, *framework, w, *out, *store, af.fromArchive, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit report: %v\n", err)
		return 2
	}
	if af.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(map[string]any{"dir": res.written.Dir, "manifest_sha256": res.written.ManifestSHA256,
			"signed": res.written.Signed, "report": res.pack.Report})
	} else {
		err = writeReportTable(stdout, res)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit report: %v\n", err)
		return 2
	}
	for _, c := range res.pack.Report.Controls {
		if c.Result == report.Findings && af.failOn != "none" || c.Result == report.NotAssessable && af.failOn == report.NotAssessable {
			return 1
		}
	}
	return 0
}

type reportResult struct {
	pack    *report.Pack
	written *report.Written
}

// writeReport generates one pack over w into dir (default
// report.dir/REPORT_ID) and, with store, indexes it in the reports table
// (a failure to index is a warning: the pack is written). With
// fromArchive the pack is made from the Parquet archive under it
// (openArchiveReader) and still indexed in ClickHouse.
func writeReport(ctx context.Context, cfg config.Configuration, framework string, w query.Window, dir string, store bool,
	fromArchive string, warn io.Writer) (*reportResult, error) {
	var key ed25519.PrivateKey
	if cfg.Report.SigningKey != "" {
		var err error
		if key, err = report.LoadSigningKey(cfg.Report.SigningKey); err != nil {
			return nil, fmt.Errorf("report.signing_key: %w", err)
		}
	}
	conn, err := clickhousedb.Open(cfg.ClickHouse)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	defer conn.Close()
	reader := query.New(conn, cfg.ClickHouse.Database)
	if fromArchive != "" {
		r, closeArchive, err := openArchiveReader(ctx, cfg, fromArchive, warn)
		if err != nil {
			return nil, err
		}
		defer closeArchive()
		reader = r
	}
	pack, err := report.Generate(ctx, reader, report.Request{
		Framework: framework, Window: w, PolicyFile: cfg.Policy.File, RetentionTTL: cfg.ClickHouse.Retention})
	if err != nil {
		return nil, err
	}
	if dir == "" {
		dir = filepath.Join(cfg.Report.Dir, pack.Report.ReportID)
	}
	written, err := report.Write(dir, pack, key)
	if err != nil {
		return nil, err
	}
	if store {
		err := report.Store(ctx, conn, cfg.ClickHouse.Database, pack, written)
		if err != nil && strings.Contains(err.Error(), "doesn't exist") {
			// An older database: create the reports table and retry.
			if _, merr := sink.Migrate(ctx, conn, cfg.ClickHouse.Database, cfg.ClickHouse.Retention, nil); merr == nil {
				err = report.Store(ctx, conn, cfg.ClickHouse.Database, pack, written)
			}
		}
		if err != nil {
			fmt.Fprintf(warn, "warning: the pack is written but not indexed: %v (use --store=false without database write access)\n", err)
		}
	}
	return &reportResult{pack: pack, written: written}, nil
}

func writeReportTable(out io.Writer, res *reportResult) error {
	r := res.pack.Report
	s := r.Summary
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s evidence pack %s\n", r.FrameworkTitle, r.ReportID)
	fmt.Fprintf(tw, "window\t%s .. %s\n", r.Window.From.Format(time.RFC3339), r.Window.To.Format(time.RFC3339))
	fmt.Fprintf(tw, "CDE\t%s\n", strings.Join(r.CDESegments, ", "))
	for _, kv := range []struct {
		k string
		v any
	}{{"flows", s.Flows}, {"flows into CDE", s.FlowsIntoCDE}, {"flows out of CDE", s.FlowsOutOfCDE}, {"violations", s.Violations},
		{"unused rules", s.UnusedRules}, {"identities reaching CDE", s.IdentitiesReachingCDE}, {"failed logins", s.FailedLogins},
		{"alerts", s.Alerts}, {"probe runs", s.ProbeRuns}, {"oldest retained day", s.OldestRetainedDay}} {
		fmt.Fprintf(tw, "%s\t%v\n", kv.k, kv.v)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CONTROL\tRESULT\tTITLE")
	for _, c := range r.Controls {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.ID, c.Result, c.Title)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	signed := ""
	if res.written.Signed {
		signed = " (signed)"
	}
	_, err := fmt.Fprintf(out, "\nwritten to %s%s\nopen %s\nmanifest sha256 %s\n", res.written.Dir, signed,
		filepath.Join(res.written.Dir, report.FileHTML), res.written.ManifestSHA256)
	return err
}

func cmdReportVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("report verify", "DIR [--key PUBLIC.pem] [--format table|json]", `
Verify an evidence pack: every file of MANIFEST.sha256 has its SHA-256,
no file was added, and MANIFEST.sha256.sig (when present) is a valid
ed25519 signature of the manifest. Without --key the signature is checked
against the public key shipped in the pack, which proves the pack is
intact but not who signed it: pass --key (the PEM public key, or the
private signing key) to pin the signer.

Exit codes: 0 verified, 1 verification failed, 2 usage or runtime error.`, stderr)
	keyPath := fs.String("key", "", "ed25519 public (or private) key `file`, PEM, to check the signature against")
	format := fs.String("format", "table", "output `format`: table or json")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "flowaudit report verify: give exactly one pack directory")
		fs.Usage()
		return 2
	}
	if *format != "table" && *format != "json" {
		fmt.Fprintf(stderr, "flowaudit report verify: --format: %q is not table or json\n", *format)
		return 2
	}
	var pub ed25519.PublicKey
	if *keyPath != "" {
		var err error
		if pub, err = report.LoadPublicKey(*keyPath); err != nil {
			fmt.Fprintf(stderr, "flowaudit report verify: --key: %v\n", err)
			return 2
		}
	}
	v, err := report.Verify(pos[0], pub)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit report verify: %v\n", err)
		return 2
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(v)
	} else {
		state := "OK"
		if !v.OK() {
			state = "FAILED"
		}
		_, err = fmt.Fprintf(stdout, "%s: %s (%d files, signature %s", v.Dir, state, v.Files, v.Signature)
		if err == nil && v.KeySource != "" {
			_, err = fmt.Fprintf(stdout, " with the key from %s", v.KeySource)
		}
		fmt.Fprintln(stdout, ")")
		for _, p := range v.Problems {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit report verify: %v\n", err)
		return 2
	}
	if !v.OK() {
		return 1
	}
	return 0
}

// newReportSchedule builds the report.schedule component of run (nil
// when run does not schedule reports or report.schedule is empty) with
// its own ClickHouse connection, closed by the returned function. Packs
// are announced to the endpoints of alerts.webhooks.
func newReportSchedule(enabled bool, cfg config.Configuration, logger *slog.Logger) (*report.Component, func(), error) {
	if !enabled || cfg.Report.Schedule == "" {
		return nil, func() {}, nil
	}
	conn, err := clickhousedb.Open(cfg.ClickHouse)
	if err != nil {
		return nil, nil, fmt.Errorf("clickhouse: %w", err)
	}
	var hooks []report.Hook
	for _, e := range cfg.Alerts.Webhooks {
		hooks = append(hooks, report.Hook{URL: e.URL, Secret: e.Secret, Format: e.Format, Headers: e.Headers,
			Timeout: e.Timeout, MaxAttempts: e.MaxAttempts})
	}
	c, err := report.New(cfg.Report, report.Dependencies{Conn: conn, Database: cfg.ClickHouse.Database, PolicyFile: cfg.Policy.File,
		RetentionTTL: cfg.ClickHouse.Retention, Hooks: hooks, Log: logger})
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return c, func() { _ = conn.Close() }, nil
}
