package report

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/robfig/cron/v3"

	"github.com/flowaudit/flowaudit/internal/signedpost"
	"github.com/flowaudit/flowaudit/query"
)

// Hook is one webhook endpoint a written pack is announced to (the
// endpoints of alerts.webhooks; min_severity does not apply: every
// scheduled pack is announced).
type Hook struct {
	URL, Secret, Format string // Format json or slack
	Headers             map[string]string
	Timeout             time.Duration
	MaxAttempts         int
}

// Event is the body of a report event posted to the webhooks (format
// json), signed like alerts: X-Flowaudit-Signature is the hex
// HMAC-SHA256 of the body keyed with the endpoint's secret, and
// X-Flowaudit-Event is "report".
type Event struct {
	Event          string  `json:"event"` // "report"
	ReportID       string  `json:"report_id"`
	Framework      string  `json:"framework"`
	GeneratedAt    string  `json:"generated_at"`
	Window         Span    `json:"window"`
	Path           string  `json:"path"`
	ManifestSHA256 string  `json:"manifest_sha256"`
	Signed         bool    `json:"signed"`
	Summary        Summary `json:"summary"`
}

// NewEvent returns the report event of a written pack.
func NewEvent(p *Pack, w *Written) Event {
	return Event{Event: "report", ReportID: p.Report.ReportID, Framework: p.Report.Framework,
		GeneratedAt: p.Report.GeneratedAt.Format(time.RFC3339), Window: p.Report.Window, Path: w.Dir,
		ManifestSHA256: w.ManifestSHA256, Signed: w.Signed, Summary: p.Report.Summary}
}

// Announce posts ev to every hook, each up to its MaxAttempts (default 3)
// with a doubling wait from 500 ms; it returns the hooks' errors joined.
func Announce(ctx context.Context, client *http.Client, hooks []Hook, ev Event) error {
	var errs []error
	for _, h := range hooks {
		body, err := eventBody(h, ev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t := signedpost.Target{URL: h.URL, Secret: h.Secret, Headers: h.Headers, Timeout: h.Timeout, MaxAttempts: h.MaxAttempts}
		if err := signedpost.Post(ctx, client, t, "report", map[string]string{"X-Flowaudit-Report-Id": ev.ReportID}, body); err != nil {
			errs = append(errs, fmt.Errorf("webhook %s: %w", redact(h.URL), err))
		}
	}
	return errors.Join(errs...)
}

func redact(u string) string {
	if i := bytes.IndexAny([]byte(u), "?@"); i >= 0 {
		return u[:i] + "…"
	}
	return u
}

func eventBody(h Hook, ev Event) ([]byte, error) {
	if h.Format == "slack" {
		s := ev.Summary
		text := fmt.Sprintf("%s evidence pack %s written to %s: %d controls met, %d with findings, %d not assessable; %d flows into the CDE, %d violations.",
			FrameworkTitle(ev.Framework), ev.ReportID, ev.Path, s.ControlsMet, s.ControlsFindings, s.ControlsNotAssessable, s.FlowsIntoCDE, s.Violations)
		return json.Marshal(map[string]string{"text": text})
	}
	return json.Marshal(ev)
}

// Dependencies are what scheduled packs need from the process.
type Dependencies struct {
	Conn         driver.Conn // ClickHouse, owned by the caller
	Database     string
	PolicyFile   string
	RetentionTTL time.Duration
	Hooks        []Hook
	HTTPClient   *http.Client // default: http.DefaultClient
	Log          *slog.Logger
}

// Component writes a pack per framework of report.frameworks on
// report.schedule inside `flowaudit run`: under report.dir, indexed in
// the reports table, announced to the webhooks.
type Component struct {
	cfg  Configuration
	deps Dependencies
	key  ed25519.PrivateKey
	log  *slog.Logger
	cron *cron.Cron

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex // one run at a time
}

// New validates the configuration and loads the signing key.
func New(cfg Configuration, deps Dependencies) (*Component, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Schedule != "" && deps.PolicyFile == "" {
		return nil, errors.New("report.schedule: needs policy.file (packs are checked against the policy)")
	}
	c := &Component{cfg: cfg, deps: deps, log: deps.Log}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("component", "report")
	if c.deps.HTTPClient == nil {
		c.deps.HTTPClient = http.DefaultClient
	}
	if cfg.SigningKey != "" {
		k, err := LoadSigningKey(cfg.SigningKey)
		if err != nil {
			return nil, fmt.Errorf("report.signing_key: %w", err)
		}
		c.key = k
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Start starts the schedule (nothing when report.schedule is empty).
func (c *Component) Start() error {
	if c.cfg.Schedule == "" {
		return nil
	}
	sched, err := CronParser.Parse(c.cfg.Schedule)
	if err != nil {
		return fmt.Errorf("report.schedule: %w", err)
	}
	c.cron = cron.New(cron.WithParser(CronParser))
	c.cron.Schedule(sched, cron.FuncJob(c.scheduled))
	c.cron.Start()
	c.log.Info("scheduled compliance reports", "schedule", c.cfg.Schedule, "frameworks", c.cfg.Frameworks, "dir", c.cfg.Dir)
	return nil
}

// Stop stops the schedule and waits for a pack being written.
func (c *Component) Stop() error {
	if c.cron != nil {
		<-c.cron.Stop().Done()
	}
	c.cancel()
	c.wg.Wait()
	return nil
}

func (c *Component) scheduled() {
	if !c.mu.TryLock() {
		c.log.Warn("previous report run still going; skipping this one")
		return
	}
	defer c.mu.Unlock()
	c.wg.Add(1)
	defer c.wg.Done()
	if _, err := c.RunOnce(c.ctx, time.Now()); err != nil {
		c.log.Error("scheduled report failed", "err", err)
	}
}

// RunOnce writes one pack per framework over report.since before now,
// indexes each and announces it. Packs already written stay written when
// a later step fails.
func (c *Component) RunOnce(ctx context.Context, now time.Time) ([]*Written, error) {
	since, err := ParseSince(c.cfg.Since)
	if err != nil {
		return nil, fmt.Errorf("report.since: %w", err)
	}
	r := query.New(c.deps.Conn, c.deps.Database)
	var out []*Written
	var errs []error
	for _, fw := range c.cfg.Frameworks {
		p, err := Generate(ctx, r, Request{Framework: fw, Window: query.Since(since, now), PolicyFile: c.deps.PolicyFile,
			RetentionTTL: c.deps.RetentionTTL, Now: now})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fw, err))
			continue
		}
		w, err := Write(filepath.Join(c.cfg.Dir, p.Report.ReportID), p, c.key)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fw, err))
			continue
		}
		out = append(out, w)
		if err := Store(ctx, c.deps.Conn, c.deps.Database, p, w); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fw, err))
		}
		if err := Announce(ctx, c.deps.HTTPClient, c.deps.Hooks, NewEvent(p, w)); err != nil {
			errs = append(errs, fmt.Errorf("%s: announcing: %w", fw, err))
		}
		c.log.Info("report written", "report_id", p.Report.ReportID, "dir", w.Dir, "met", p.Report.Summary.ControlsMet,
			"findings", p.Report.Summary.ControlsFindings, "not_assessable", p.Report.Summary.ControlsNotAssessable)
	}
	return out, errors.Join(errs...)
}
