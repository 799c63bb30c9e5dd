package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
	"github.com/flowaudit/flowaudit/detect/webhook"
	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/internal/signedpost"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/report"
)

func cmdAuditDigest(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit digest", "[--since 24h] [--format table|json] [--fail-on new|hot|quiet|none]", `
One screen against log overload, over the window:
  new    service edges first seen in it (by hour), those with a client
         identity into a segment tagged sensitive or pci-cde (segments of
         policy.file, when configured), policy versions applied;
  hot    the violation edges with the most flows (top 10), alerts counted
         by kind and severity;
  quiet  rules that decided flows in the previous window of the same
         length and none in this one.
"flowaudit run" sends it to every alerts.webhooks endpoint on
audit.digest_schedule (cron; off by default), signed like alerts.
--fail-on new, hot or quiet exits 1 when that part is not empty.`, stderr)
	var af auditFlags
	af.register(fs, "24h", "table or json", "new, hot, quiet or none")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	w, err := af.window(time.Now())
	switch {
	case err != nil:
	case len(pos) > 0:
		err = fmt.Errorf("unexpected argument %q", pos[0])
	case af.format != "table" && af.format != "json":
		err = fmt.Errorf("--format: %q is not table or json", af.format)
	case af.failOn != "none" && af.failOn != "new" && af.failOn != "hot" && af.failOn != "quiet":
		err = fmt.Errorf("--fail-on: %q is not new, hot, quiet or none", af.failOn)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit digest: %v\n", err)
		return 2
	}
	env, ok := openAudit("audit digest", af, false, stderr)
	if !ok {
		return 2
	}
	defer env.close()
	ctx, cancel := signalContext()
	defer cancel()
	d, err := collectDigest(ctx, env.reader, env.cfg.Policy.File, w)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit digest: %v\n", err)
		return 2
	}
	if af.format == "json" {
		err = audit.WriteJSON(stdout, d)
	} else {
		err = audit.WriteDigestTable(stdout, d)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit digest: %v\n", err)
		return 2
	}
	switch {
	case af.failOn == "new" && len(d.New.Edges)+len(d.New.PolicyVersions) > 0,
		af.failOn == "hot" && len(d.Hot.Violations)+len(d.Hot.Alerts) > 0,
		af.failOn == "quiet" && len(d.Quiet) > 0:
		return 1
	}
	return 0
}

// collectDigest reads what a digest of w needs; policyFile ("" for none)
// tags the sensitive segments.
func collectDigest(ctx context.Context, r *query.Reader, policyFile string, w query.Window) (*audit.Digest, error) {
	in := audit.DigestInput{Window: w}
	if policyFile != "" {
		p, err := policy.Load(policyFile)
		if err != nil {
			return nil, fmt.Errorf("policy.file: %w", err)
		}
		in.Policy = p
	}
	prev := query.Window{From: w.From.Add(-w.To.Sub(w.From)), To: w.From}
	var err error
	steps := []func() error{
		func() (err error) { in.Applications, err = r.PolicyApplications(ctx, w.To); return },
		func() (err error) { in.NewEdges, err = r.EdgesFirstSeen(ctx, w); return },
		func() (err error) { in.Violations, err = r.ViolationEdges(ctx, w); return },
		func() (err error) { in.Alerts, err = r.Alerts(ctx, w, nil); return },
		func() (err error) { in.Rules, err = r.RuleTraffics(ctx, w); return },
		func() (err error) { in.RulesBefore, err = r.RuleTraffics(ctx, prev); return },
	}
	for _, step := range steps {
		if err = step(); err != nil {
			return nil, err
		}
	}
	return audit.DigestOf(in), nil
}

// DigestWindow is the window of a scheduled digest.
const DigestWindow = 24 * time.Hour

// digestSchedule sends the digest of the last DigestWindow to the alert
// webhooks on audit.digest_schedule, inside `flowaudit run`.
type digestSchedule struct {
	cfg    config.Configuration
	reader *query.Reader
	client *http.Client
	log    *slog.Logger
	cron   *cron.Cron

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // one digest at a time
}

// newDigestSchedule builds the schedule when enabled and configured; the
// returned func closes its ClickHouse connection.
func newDigestSchedule(enabled bool, cfg config.Configuration, logger *slog.Logger) (*digestSchedule, func(), error) {
	if !enabled || cfg.Audit.DigestSchedule == "" {
		return nil, func() {}, nil
	}
	if len(cfg.Alerts.Webhooks) == 0 {
		logger.Warn("audit.digest_schedule is set but alerts.webhooks is empty: no digest is sent")
		return nil, func() {}, nil
	}
	sched, err := report.CronParser.Parse(cfg.Audit.DigestSchedule)
	if err != nil {
		return nil, nil, fmt.Errorf("audit.digest_schedule: %w", err)
	}
	conn, err := clickhousedb.Open(cfg.ClickHouse)
	if err != nil {
		return nil, nil, fmt.Errorf("clickhouse: %w", err)
	}
	s := &digestSchedule{cfg: cfg, reader: query.New(conn, cfg.ClickHouse.Database), client: &http.Client{}, log: logger,
		cron: cron.New(cron.WithParser(report.CronParser))}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cron.Schedule(sched, cron.FuncJob(s.send))
	return s, func() { _ = conn.Close() }, nil
}

func (s *digestSchedule) Start() error {
	s.cron.Start()
	return nil
}

// Stop stops the schedule and cancels a digest being sent.
func (s *digestSchedule) Stop() error {
	s.cancel()
	<-s.cron.Stop().Done()
	return nil
}

func (s *digestSchedule) send() {
	if !s.mu.TryLock() {
		return // the previous digest is still being sent
	}
	defer s.mu.Unlock()
	w := query.Since(DigestWindow, time.Now())
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
	defer cancel()
	d, err := collectDigest(ctx, s.reader, s.cfg.Policy.File, w)
	if err != nil {
		s.log.Error("audit digest not sent", "err", err)
		return
	}
	if err := postDigest(ctx, s.client, s.cfg.Alerts.Webhooks, d); err != nil {
		s.log.Error("audit digest not delivered", "err", err)
		return
	}
	s.log.Info("audit digest sent", "from", w.From, "to", w.To, "endpoints", len(s.cfg.Alerts.Webhooks))
}

// DigestEvent is the body of a digest posted to a json webhook.
type DigestEvent struct {
	Event  string        `json:"event"` // "digest"
	Digest *audit.Digest `json:"digest"`
}

// postDigest posts d to every endpoint, signed like alerts
// (X-Flowaudit-Signature: hex HMAC-SHA256 of the body keyed with the
// endpoint's secret; X-Flowaudit-Event: digest), each up to its
// max_attempts (default 3) with a doubling wait from 500 ms.
func postDigest(ctx context.Context, client *http.Client, hooks []webhook.Endpoint, d *audit.Digest) error {
	var errs []error
	for i, h := range hooks {
		body, err := digestBody(h.Format, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t := signedpost.Target{URL: h.URL, Secret: h.Secret, Headers: h.Headers, Timeout: h.Timeout, MaxAttempts: h.MaxAttempts}
		if err := signedpost.Post(ctx, client, t, "digest", nil, body); err != nil {
			errs = append(errs, fmt.Errorf("alerts.webhooks[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func digestBody(format string, d *audit.Digest) ([]byte, error) {
	if format == "slack" {
		var b bytes.Buffer
		if err := audit.WriteDigestTable(&b, d); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]string{"text": "```\n" + b.String() + "```"})
	}
	return json.Marshal(DigestEvent{Event: "digest", Digest: d})
}
