// Package webhook delivers alerts to the HTTP endpoints of
// alerts.webhooks: a bounded queue and one worker per endpoint, posting
// each alert in order as JSON or as a Slack message, signed with the
// endpoint's secret, retried with exponential backoff, and reported as
// undelivered once given up.
//
// Each request is a POST with these headers:
//
//	Content-Type: application/json
//	User-Agent: flowaudit
//	X-Flowaudit-Signature: hex HMAC-SHA256 of the exact body, keyed with the
//	                       endpoint's secret (only when a secret is set)
//	X-Flowaudit-Alert-Id:  the alert's deterministic id
//	X-Flowaudit-Timestamp: when this attempt was sent, Unix seconds (not
//	                       covered by the signature: DESIGN.md signs the body)
//	X-Flowaudit-Attempt:   1 for the first attempt, 2 for the first retry…
//
// The body is the same bytes on every attempt. 2xx is delivered; 408, 429,
// 5xx, timeouts and connection errors are retried; other statuses are
// permanent. Delivery is at least once per endpoint: a 2xx lost on the
// way back is retried, so receivers deduplicate on X-Flowaudit-Alert-Id.
package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/schemas"
)

// DefaultDrainTimeout bounds how long Stop keeps delivering what is queued.
const DefaultDrainTimeout = 10 * time.Second

// ErrStopped is the cause given to the undelivered callback for alerts
// still queued or in flight when Stop's drain deadline passed, and for
// alerts enqueued after Stop.
var ErrStopped = errors.New("webhook dispatcher stopped before delivery")

// ErrQueueFull is the cause given to the undelivered callback for the
// oldest alert, dropped to make room in an endpoint's full queue.
var ErrQueueFull = errors.New("dropped from a full webhook queue")

// Dispatcher delivers alerts to every configured endpoint. Enqueue, Flush
// and Stop are safe for concurrent use.
type Dispatcher struct {
	r            *reporter.Reporter
	hooks        []*hook
	client       *http.Client
	onUndeliver  func(a *schemas.Alert, endpoint string, err error)
	drainTimeout time.Duration
	metrics      *metrics
	sampler      *reporter.Sampler

	// ctx ends at Stop's drain deadline: it aborts in-flight requests and
	// backoff waits.
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.RWMutex // held for reading while pushing, so Stop sees every push
	started  bool
	stopped  bool
	stopping chan struct{} // closed by Stop: workers drain their queue, then exit
	wg       sync.WaitGroup
}

// Option tunes a Dispatcher.
type Option func(*Dispatcher)

// WithHTTPClient posts with c instead of the default client (which does
// not follow redirects: a redirected POST would be resent as a GET). Each
// attempt is still bounded by the endpoint's timeout.
func WithHTTPClient(c *http.Client) Option {
	return func(d *Dispatcher) { d.client = c }
}

// WithUndelivered calls f for every alert given up on: after the last
// attempt failed, on a permanent error, when dropped from a full queue
// (err wraps ErrQueueFull) or at shutdown (err wraps ErrStopped). endpoint
// is the endpoint's secret-free label. f is called from the endpoint's
// worker, or from the goroutine calling Enqueue or Stop; calls for
// different endpoints may be concurrent. f must not block for long, must
// not modify a, and must not call Flush or Stop (the worker calling it
// would wait for itself).
func WithUndelivered(f func(a *schemas.Alert, endpoint string, err error)) Option {
	return func(d *Dispatcher) { d.onUndeliver = f }
}

// WithDrainTimeout sets how long Stop keeps delivering queued alerts
// (default DefaultDrainTimeout).
func WithDrainTimeout(t time.Duration) Option {
	return func(d *Dispatcher) { d.drainTimeout = t }
}

// New validates cfg and prepares one queue per endpoint; Start starts
// delivering. Alerts enqueued before Start wait in the queues.
func New(r *reporter.Reporter, cfg Configuration, opts ...Option) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(r.Registry)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{
		r:            r,
		drainTimeout: DefaultDrainTimeout,
		metrics:      m,
		sampler:      reporter.NewSampler(10 * time.Second),
		stopping:     make(chan struct{}),
	}
	for _, o := range opts {
		o(d)
	}
	if d.client == nil {
		d.client = &http.Client{
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			// Not following keeps the POST a POST; a 3xx is reported as a
			// permanent failure naming the status, so the URL gets fixed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	d.ctx, d.cancel = context.WithCancelCause(context.Background())
	labels := map[string]int{}
	for i, e := range cfg.Webhooks {
		h, err := newHook(e.withDefaults(), m)
		if err != nil { // Validate accepted it; keep the key in the error anyway
			return nil, fmt.Errorf("alerts.webhooks[%d]: %w", i, err)
		}
		// Two URLs differing only in their query (or redacted token)
		// would share series; keep labels unique.
		if n := labels[h.label]; n > 0 {
			labels[h.label] = n + 1
			h.label = fmt.Sprintf("%s (%d)", h.label, n+1)
		} else {
			labels[h.label] = 1
		}
		h.bindMetrics(m)
		d.hooks = append(d.hooks, h)
	}
	return d, nil
}

// Start starts one worker per endpoint.
func (d *Dispatcher) Start() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.stopped:
		return errors.New("webhook dispatcher already stopped")
	case d.started:
		return errors.New("webhook dispatcher already started")
	}
	d.started = true
	for _, h := range d.hooks {
		d.wg.Add(1)
		go d.run(h)
	}
	if len(d.hooks) > 0 {
		d.r.Logger.Info("webhook dispatcher started", "endpoints", d.Endpoints())
	}
	return nil
}

// Stop stops accepting alerts and keeps delivering the queued ones for at
// most the drain timeout; then it aborts in-flight requests and reports
// every alert left as undelivered (ErrStopped). It returns once every
// worker has exited. Calling it again does nothing.
func (d *Dispatcher) Stop() error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	close(d.stopping)
	started := d.started
	d.mu.Unlock()

	if started {
		done := make(chan struct{})
		go func() { d.wg.Wait(); close(done) }()
		timer := time.NewTimer(d.drainTimeout)
		select {
		case <-done:
		case <-timer.C:
			d.r.Logger.Warn("webhook drain deadline passed; giving up on queued alerts",
				"drain_timeout", d.drainTimeout, "pending", d.pending())
			d.cancel(ErrStopped) // workers give up what is left and exit
			<-done
		}
		timer.Stop()
	}
	d.cancel(ErrStopped)
	// Without workers (never started) nothing drained the queues.
	left := 0
	for _, h := range d.hooks {
		for {
			it, ok := h.take()
			if !ok {
				break
			}
			d.giveUp(h, it.alert, ErrStopped)
			h.done()
			it.end(true)
			left++
		}
	}
	if left > 0 {
		d.r.Logger.Warn("webhook dispatcher stopped before starting; alerts undelivered", "alerts", left)
	}
	return nil
}

// Enqueue hands a to every endpoint whose min_severity it meets and
// returns how many took it. It never blocks: an endpoint whose queue is
// full drops its oldest waiting alert (counted in
// flowaudit_webhook_dropped_total and reported undelivered with
// ErrQueueFull). Updates (a.Update) are not sent: a webhook announces a
// finding once. Enqueue copies *a; the caller may reuse it. After Stop it
// takes nothing and reports a undelivered (ErrStopped) to the endpoints
// that would have taken it.
func (d *Dispatcher) Enqueue(a *schemas.Alert) int { return d.EnqueueDone(a, nil) }

// EnqueueDone is Enqueue, and calls done once every endpoint that took a
// has delivered it or given up on it; final is false when some endpoint
// gave up because of Stop (ErrStopped), so a's source offset should not
// be committed. done is called from an endpoint's worker, or from the
// goroutine calling EnqueueDone or Stop; it must not block for long.
// When no endpoint's min_severity admits a, done is not called (the
// result is 0); after Stop it is called with final false.
func (d *Dispatcher) EnqueueDone(a *schemas.Alert, done func(final bool)) int {
	if a == nil || a.Update {
		return 0
	}
	var takers []*hook
	for _, h := range d.hooks {
		if a.Severity >= h.minSeverity {
			takers = append(takers, h)
		}
	}
	if len(takers) == 0 {
		return 0
	}
	c := *a
	it := &item{alert: &c, enqueued: time.Now(), onDone: done}
	it.remaining.Store(int32(len(takers)))
	var dropped, refused []*hook
	var droppedItems []*item
	taken := 0
	d.mu.RLock()
	for _, h := range takers {
		if d.stopped {
			refused = append(refused, h)
			continue
		}
		if old := h.push(it); old != nil {
			dropped = append(dropped, h)
			droppedItems = append(droppedItems, old)
		}
		taken++
	}
	d.mu.RUnlock()
	// Callbacks run without locks held: they may enqueue or flush.
	for i, h := range dropped {
		h.dropped.Inc()
		d.giveUp(h, droppedItems[i].alert, ErrQueueFull)
		droppedItems[i].end(false)
	}
	for _, h := range refused {
		d.giveUp(h, it.alert, ErrStopped)
		it.end(true)
	}
	return taken
}

// Flush waits until every alert enqueued before the call is delivered or
// given up (every queue empty and no request in flight), or ctx ends.
// (The detect stage does not flush: it commits per alert through
// EnqueueDone.) Before Start it waits for ctx (nothing drains the queues).
func (d *Dispatcher) Flush(ctx context.Context) error {
	for _, h := range d.hooks {
		h.mu.Lock()
		idle := h.idle
		h.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return fmt.Errorf("webhook flush: %d alerts still pending: %w", d.pending(), context.Cause(ctx))
		}
	}
	return nil
}

// Endpoints returns the endpoints' labels, in configuration order: the
// endpoint value given to the undelivered callback and metrics.
func (d *Dispatcher) Endpoints() []string {
	out := make([]string, len(d.hooks))
	for i, h := range d.hooks {
		out[i] = h.label
	}
	return out
}

func (d *Dispatcher) pending() int {
	n := 0
	for _, h := range d.hooks {
		h.mu.Lock()
		n += h.pendingLocked()
		h.mu.Unlock()
	}
	return n
}

// giveUp reports a undelivered to endpoint h: metric, callback, sampled
// log line.
func (d *Dispatcher) giveUp(h *hook, a *schemas.Alert, err error) {
	h.undelivered.Inc()
	if d.onUndeliver != nil {
		d.onUndeliver(a, h.label, err)
	}
	if ok, suppressed := d.sampler.Allow("undelivered " + h.label); ok {
		d.r.Logger.Warn("webhook alert undelivered", "endpoint", h.label, "alert_id", a.ID, "kind", a.Kind,
			"severity", a.Severity.String(), "error", err.Error(), "suppressed", suppressed)
	}
}

// endpointLabel names u in metrics and logs without secrets: scheme, host
// and path, no user info, query or fragment, and path segments that look
// like tokens replaced by "***" (Slack's
// /services/T…/B…/<token>, Discord's /api/webhooks/<id>/<token>).
func endpointLabel(u *url.URL) string {
	segs := strings.Split(u.EscapedPath(), "/")
	for i, s := range segs {
		if looksLikeToken(s) {
			segs[i] = "***"
		}
	}
	return u.Scheme + "://" + u.Host + strings.Join(segs, "/")
}

// looksLikeToken: 16 or more URL-safe characters mixing in digits or
// upper case. Readable names ("flowaudit-alerts-receiver") are kept;
// over-redacting a label costs little, leaking a token in /metrics a lot.
func looksLikeToken(s string) bool {
	if len(s) < 16 {
		return false
	}
	mixed := false
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r == '-', r == '.':
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '=', r == '%':
			mixed = true
		default:
			return false
		}
	}
	return mixed
}
