package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowaudit/flowaudit/internal/backoff"
	"github.com/flowaudit/flowaudit/schemas"
)

// hook is one endpoint at run time: its settings, its queue and its
// metric series.
type hook struct {
	cfg         Endpoint // defaults applied
	url         string
	label       string
	minSeverity schemas.Severity
	encode      func(*schemas.Alert) ([]byte, error)
	headers     http.Header // from cfg.Headers

	sent        prometheus.Counter
	undelivered prometheus.Counter
	dropped     prometheus.Counter
	queued      prometheus.Gauge
	delivery    prometheus.Observer
	failed      *prometheus.CounterVec // curried with the endpoint

	wake chan struct{} // capacity 1: a push wakes the worker

	mu       sync.Mutex
	buf      []*item // ring of cap QueueSize
	head, n  int
	inFlight bool
	idle     chan struct{} // closed while nothing is pending; Flush waits on it
}

// item is one alert waiting for one or several endpoints; it is shared
// and read-only.
type item struct {
	alert    *schemas.Alert
	enqueued time.Time

	// remaining counts the endpoints not yet done with the alert; the
	// last one to finish calls onDone (set by EnqueueDone).
	remaining atomic.Int32
	stopped   atomic.Bool // some endpoint left it at shutdown (ErrStopped)
	onDone    func(final bool)
}

// end records that one endpoint is done with it: delivered or given up
// (stopped: given up with ErrStopped, so it is not final).
func (it *item) end(stopped bool) {
	if stopped {
		it.stopped.Store(true)
	}
	if it.remaining.Add(-1) == 0 && it.onDone != nil {
		it.onDone(!it.stopped.Load())
	}
}

func newHook(e Endpoint, m *metrics) (*hook, error) {
	u, err := url.Parse(e.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %q is not a URL", redactURL(e.URL))
	}
	minSev, _ := schemas.ParseSeverity(e.MinSeverity)
	h := &hook{
		cfg:         e,
		url:         e.URL,
		label:       e.Name,
		minSeverity: minSev,
		encode:      encodeJSON,
		headers:     http.Header{},
		wake:        make(chan struct{}, 1),
		buf:         make([]*item, e.QueueSize),
		idle:        make(chan struct{}),
	}
	close(h.idle)
	if h.label == "" {
		h.label = endpointLabel(u)
	}
	if e.Format == FormatSlack {
		h.encode = encodeSlack
	}
	for k, v := range e.Headers {
		h.headers.Set(k, v)
	}
	return h, nil
}

// bindMetrics resolves the endpoint's series once its label is final, so
// they exist (at zero) from the start.
func (h *hook) bindMetrics(m *metrics) {
	h.sent = m.sent.WithLabelValues(h.label)
	h.undelivered = m.undelivered.WithLabelValues(h.label)
	h.dropped = m.dropped.WithLabelValues(h.label)
	h.queued = m.queued.WithLabelValues(h.label)
	h.delivery = m.delivery.WithLabelValues(h.label)
	h.failed = m.failed.MustCurryWith(prometheus.Labels{"endpoint": h.label})
	h.queued.Set(0)
}

// push appends it, dropping and returning the oldest waiting item when
// the queue is full.
func (h *hook) push(it *item) (dropped *item) {
	h.mu.Lock()
	if h.n == len(h.buf) {
		dropped = h.buf[h.head]
		h.buf[h.head] = nil
		h.head = (h.head + 1) % len(h.buf)
		h.n--
	}
	if h.pendingLocked() == 0 {
		h.idle = make(chan struct{})
	}
	h.buf[(h.head+h.n)%len(h.buf)] = it
	h.n++
	h.queued.Set(float64(h.pendingLocked()))
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return dropped
}

// take moves the oldest waiting item in flight; done ends it.
func (h *hook) take() (*item, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return nil, false
	}
	it := h.buf[h.head]
	h.buf[h.head] = nil
	h.head = (h.head + 1) % len(h.buf)
	h.n--
	h.inFlight = true
	return it, true
}

func (h *hook) done() {
	h.mu.Lock()
	h.inFlight = false
	// The gauge first: Flush returns as soon as idle closes.
	h.queued.Set(float64(h.pendingLocked()))
	if h.n == 0 {
		close(h.idle)
	}
	h.mu.Unlock()
}

func (h *hook) waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

func (h *hook) pendingLocked() int {
	if h.inFlight {
		return h.n + 1
	}
	return h.n
}

// run is the endpoint's worker: one alert at a time, in order.
func (d *Dispatcher) run(h *hook) {
	defer d.wg.Done()
	for {
		if it, ok := h.take(); ok {
			stopped := d.deliver(h, it)
			h.done()
			it.end(stopped)
			continue
		}
		select {
		case <-h.wake:
		case <-d.stopping:
			// Stop lets no push in after closing stopping: once the
			// queue is empty, it stays empty.
			if h.waiting() == 0 {
				return
			}
		}
	}
}

// deliver posts it until a 2xx, a permanent error, the last attempt or
// the drain deadline, whichever comes first. It reports whether it gave
// up because of Stop (ErrStopped).
func (d *Dispatcher) deliver(h *hook, it *item) (stopped bool) {
	body, err := h.encode(it.alert)
	if err != nil {
		h.failed.WithLabelValues(reasonEncode).Inc()
		d.giveUp(h, it.alert, fmt.Errorf("cannot encode alert: %w", err))
		return false
	}
	signature := ""
	if h.cfg.Secret != "" {
		mac := hmac.New(sha256.New, []byte(h.cfg.Secret))
		mac.Write(body)
		signature = hex.EncodeToString(mac.Sum(nil))
	}
	var last error
	for attempt := 1; ; attempt++ {
		if d.ctx.Err() != nil {
			d.giveUp(h, it.alert, stoppedError(attempt-1, last))
			return true
		}
		f := d.post(h, it.alert, body, signature, attempt)
		if f == nil {
			h.sent.Inc()
			h.delivery.Observe(time.Since(it.enqueued).Seconds())
			return false
		}
		last = f.err
		h.failed.WithLabelValues(f.reason).Inc()
		if f.reason == reasonShutdown {
			d.giveUp(h, it.alert, stoppedError(attempt, last))
			return true
		}
		if !f.retryable || attempt >= h.cfg.MaxAttempts {
			d.giveUp(h, it.alert, fmt.Errorf("after %d attempt(s): %w", attempt, f.err))
			return false
		}
		wait := backoff.Delay(h.cfg.InitialBackoff, h.cfg.MaxBackoff, attempt, true)
		if f.retryAfter > wait {
			// Honour the receiver, but never beyond max_backoff: the
			// queue behind this alert waits too.
			wait = min(f.retryAfter, h.cfg.MaxBackoff)
		}
		if ok, suppressed := d.sampler.Allow("retry " + h.label); ok {
			d.r.Logger.Warn("webhook attempt failed, retrying", "endpoint", h.label, "alert_id", it.alert.ID,
				"attempt", attempt, "max_attempts", h.cfg.MaxAttempts, "retry_in", wait.Round(time.Millisecond),
				"error", f.err.Error(), "suppressed", suppressed)
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-d.ctx.Done():
			timer.Stop()
		}
	}
}

func stoppedError(attempts int, last error) error {
	if last == nil {
		return fmt.Errorf("%w (%d attempts)", ErrStopped, attempts)
	}
	return fmt.Errorf("%w (%d attempts, last: %v)", ErrStopped, attempts, last)
}

// failure is one failed attempt.
type failure struct {
	err        error
	reason     string        // flowaudit_webhook_failed_total reason
	retryable  bool          // worth another attempt
	retryAfter time.Duration // from Retry-After, 0 when absent
}

// post makes one attempt; nil means delivered (2xx).
func (d *Dispatcher) post(h *hook, a *schemas.Alert, body []byte, signature string, attempt int) *failure {
	ctx, cancel := context.WithTimeout(d.ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return &failure{err: fmt.Errorf("cannot build request for %s: %w", h.label, err), reason: reasonRequest}
	}
	for k, v := range h.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flowaudit")
	req.Header.Set("X-Flowaudit-Alert-Id", headerSafe(a.ID))
	req.Header.Set("X-Flowaudit-Timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	req.Header.Set("X-Flowaudit-Attempt", strconv.Itoa(attempt))
	if signature != "" {
		req.Header.Set("X-Flowaudit-Signature", signature)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return classifyTransportError(d.ctx, h.label, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	// Reading the rest (bounded) lets the connection be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	se := &StatusError{Code: resp.StatusCode, Body: sanitizeSnippet(snippet)}
	f := &failure{err: se, retryable: !se.Permanent()}
	switch c := resp.StatusCode; {
	case c == http.StatusTooManyRequests:
		f.reason = reasonStatus429
	case c >= 500:
		f.reason = reasonStatus5xx
	case c >= 400:
		f.reason = reasonStatus4xx
	default:
		f.reason = reasonStatusMisc
	}
	if f.retryable {
		f.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return f
}

// classifyTransportError turns a client error into a failure whose
// message names the endpoint's label, not its URL: *url.Error quotes the
// full URL, query secrets included.
func classifyTransportError(dctx context.Context, label string, err error) *failure {
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	f := &failure{err: fmt.Errorf("POST %s: %w", label, inner), retryable: true, reason: reasonConnection}
	switch {
	case dctx.Err() != nil:
		f.reason, f.retryable = reasonShutdown, false
	case errors.Is(err, context.DeadlineExceeded):
		f.reason = reasonTimeout
	default:
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			f.reason = reasonTimeout
		}
	}
	// Anything else (refused, reset, DNS, TLS) may heal: retry.
	return f
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Code int
	Body string // the start of the response body, sanitized
}

func (e *StatusError) Error() string {
	s := "HTTP " + strconv.Itoa(e.Code)
	if t := http.StatusText(e.Code); t != "" {
		s += " " + t
	}
	if e.Code >= 300 && e.Code < 400 {
		s += " (redirects are not followed: fix the URL)"
	}
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Permanent reports whether retrying cannot help. 5xx (the receiver or a
// proxy in front of it failing), 429 (rate limited) and 408 (the receiver
// timed out reading us) are transient. Other 4xx mean a bad URL, auth or
// payload, and 1xx/3xx a redirect we do not follow: the same request
// would fail again.
func (e *StatusError) Permanent() bool {
	return e.Code < 500 && e.Code != http.StatusTooManyRequests && e.Code != http.StatusRequestTimeout
}

// parseRetryAfter reads delay-seconds or an HTTP date; 0 when absent or
// unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// headerSafe replaces control characters, which would make the request
// invalid.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}

func sanitizeSnippet(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == 0xfffd {
			return ' '
		}
		return r
	}, string(bytes.ToValidUTF8(b, nil)))
	return strings.Join(strings.Fields(s), " ")
}
