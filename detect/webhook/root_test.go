package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flowaudit/flowaudit/internal/backoff"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/schemas"
)

// receiver records every request; status decides each answer from the
// 0-based index of the request.
type receiver struct {
	mu     sync.Mutex
	reqs   []received
	status func(i int, r *http.Request) int
	block  chan struct{} // when set, the handler waits on it before answering
	once   sync.Once
	seen   chan struct{} // signalled (non-blocking) on each request
}

// blocking makes the handler wait for release before answering.
func (rc *receiver) blocking() *receiver {
	rc.block = make(chan struct{})
	return rc
}

func (rc *receiver) release() { rc.once.Do(func() { close(rc.block) }) }

type received struct {
	path   string
	header http.Header
	body   []byte
	status int
	at     time.Time
}

func newReceiver(status func(i int, r *http.Request) int) *receiver {
	if status == nil {
		status = func(int, *http.Request) int { return http.StatusOK }
	}
	return &receiver{status: status, seen: make(chan struct{}, 100)}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	i := len(rc.reqs)
	code := rc.status(i, r)
	rc.reqs = append(rc.reqs, received{path: r.URL.Path, header: r.Header.Clone(), body: body, status: code, at: time.Now()})
	block := rc.block
	rc.mu.Unlock()
	select {
	case rc.seen <- struct{}{}:
	default:
	}
	if block != nil {
		<-block
	}
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

// delivered lists the alert ids answered 2xx, in order, optionally only
// for one path.
func (rc *receiver) delivered(path string) []string {
	var ids []string
	for _, r := range rc.requests() {
		if r.status/100 == 2 && (path == "" || r.path == path) {
			ids = append(ids, r.header.Get("X-Flowaudit-Alert-Id"))
		}
	}
	return ids
}

// fast makes retries quick enough for tests.
func fast(url string) Endpoint {
	return Endpoint{URL: url, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Timeout: 2 * time.Second}
}

type undelivered struct {
	id, endpoint string
	err          error
}

type harness struct {
	d           *Dispatcher
	mu          sync.Mutex
	undelivered []undelivered
}

func (h *harness) lost() []undelivered {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]undelivered(nil), h.undelivered...)
}

func start(t *testing.T, cfg Configuration, opts ...Option) *harness {
	t.Helper()
	h := &harness{}
	r := reporter.New(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	opts = append([]Option{WithUndelivered(func(a *schemas.Alert, endpoint string, err error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.undelivered = append(h.undelivered, undelivered{a.ID, endpoint, err})
	})}, opts...)
	d, err := New(r, cfg, opts...)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	if err := d.Start(); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("Stop() = %v", err)
		}
	})
	h.d = d
	return h
}

func flush(t *testing.T, d *Dispatcher, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
}

func TestSignatureAndHeaders(t *testing.T) {
	const secret = "s3cr3t"
	rc := newReceiver(nil)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	e := fast(srv.URL + "/hook?token=abc")
	e.Secret = secret
	e.Headers = map[string]string{"Authorization": "Bearer t"}
	h := start(t, Configuration{Webhooks: []Endpoint{e}})

	a := testAlert("id-1", schemas.SeverityHigh)
	if n := h.d.Enqueue(a); n != 1 {
		t.Fatalf("Enqueue() = %d, want 1", n)
	}
	a.ID = "mutated after Enqueue" // Enqueue copies
	flush(t, h.d, 5*time.Second)

	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(r.body)
	got, err := hex.DecodeString(r.header.Get("X-Flowaudit-Signature"))
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		t.Errorf("X-Flowaudit-Signature %q does not verify (%v)", r.header.Get("X-Flowaudit-Signature"), err)
	}
	for k, want := range map[string]string{
		"Content-Type":         "application/json",
		"User-Agent":           "flowaudit",
		"X-Flowaudit-Alert-Id": "id-1",
		"X-Flowaudit-Attempt":  "1",
		"Authorization":        "Bearer t",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	ts, err := strconv.ParseInt(r.header.Get("X-Flowaudit-Timestamp"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Errorf("X-Flowaudit-Timestamp = %q, want the current Unix time", r.header.Get("X-Flowaudit-Timestamp"))
	}
	if m := decodeMap(t, r.body); m["alert_id"] != "id-1" || m["severity"] != "high" {
		t.Errorf("body = %s", r.body)
	}
	label := h.d.Endpoints()[0]
	if strings.Contains(label, "token") || !strings.HasSuffix(label, "/hook") {
		t.Errorf("endpoint label %q, want scheme+host+path without query", label)
	}
	if got := value(t, h.d.metrics.sent.WithLabelValues(label)); got != 1 {
		t.Errorf("sent_total = %v, want 1", got)
	}
	if got := value(t, h.d.metrics.queued.WithLabelValues(label)); got != 0 {
		t.Errorf("queued = %v, want 0", got)
	}
}

func TestNoSecretNoSignature(t *testing.T) {
	rc := newReceiver(nil)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	e := fast(srv.URL)
	e.Format = FormatSlack
	h := start(t, Configuration{Webhooks: []Endpoint{e}})
	h.d.Enqueue(testAlert("id-1", schemas.SeverityLow))
	flush(t, h.d, 5*time.Second)
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if _, ok := reqs[0].header["X-Flowaudit-Signature"]; ok {
		t.Error("X-Flowaudit-Signature set without a secret")
	}
	if m := decodeMap(t, reqs[0].body); m["text"] == nil || m["blocks"] == nil {
		t.Errorf("Slack body lacks text or blocks: %s", reqs[0].body)
	}
}

func TestMinSeverityAndUpdates(t *testing.T) {
	rc := newReceiver(nil)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	all, high := fast(srv.URL+"/all"), fast(srv.URL+"/high")
	high.MinSeverity = "high"
	h := start(t, Configuration{Webhooks: []Endpoint{all, high}})

	var taken []int
	for i, sev := range []schemas.Severity{schemas.SeverityLow, schemas.SeverityMedium, schemas.SeverityHigh, schemas.SeverityCritical} {
		taken = append(taken, h.d.Enqueue(testAlert("a"+strconv.Itoa(i), sev)))
	}
	upd := testAlert("a3", schemas.SeverityCritical)
	upd.Update = true
	taken = append(taken, h.d.Enqueue(upd))
	flush(t, h.d, 5*time.Second)

	if diff := cmp.Diff(taken, []int{1, 1, 2, 2, 0}); diff != "" {
		t.Errorf("Enqueue() results (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(rc.delivered("/all"), []string{"a0", "a1", "a2", "a3"}); diff != "" {
		t.Errorf("/all got (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(rc.delivered("/high"), []string{"a2", "a3"}); diff != "" {
		t.Errorf("/high got (-got +want):\n%s", diff)
	}
}

func TestRetryTransientThenDelivered(t *testing.T) {
	rc := newReceiver(func(i int, _ *http.Request) int {
		if i < 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	srv := httptest.NewServer(rc)
	defer srv.Close()
	h := start(t, Configuration{Webhooks: []Endpoint{fast(srv.URL)}})
	h.d.Enqueue(testAlert("id-1", schemas.SeverityHigh))
	flush(t, h.d, 5*time.Second)

	reqs := rc.requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4 (3×503 then 200)", len(reqs))
	}
	if diff := cmp.Diff(rc.delivered(""), []string{"id-1"}); diff != "" {
		t.Errorf("delivered (-got +want):\n%s", diff)
	}
	if got := reqs[3].header.Get("X-Flowaudit-Attempt"); got != "4" {
		t.Errorf("last X-Flowaudit-Attempt = %q, want 4", got)
	}
	for i := range reqs[1:] {
		if string(reqs[i+1].body) != string(reqs[0].body) || reqs[i+1].header.Get("X-Flowaudit-Signature") != reqs[0].header.Get("X-Flowaudit-Signature") {
			t.Errorf("attempt %d body or signature differs from the first", i+2)
		}
	}
	label := h.d.Endpoints()[0]
	if got := value(t, h.d.metrics.failed.WithLabelValues(label, reasonStatus5xx)); got != 3 {
		t.Errorf("failed_total{http_5xx} = %v, want 3", got)
	}
	if got := value(t, h.d.metrics.sent.WithLabelValues(label)); got != 1 {
		t.Errorf("sent_total = %v, want 1", got)
	}
	var hm dto.Metric
	if err := h.d.metrics.delivery.WithLabelValues(label).(prometheus.Metric).Write(&hm); err != nil || hm.GetHistogram().GetSampleCount() != 1 {
		t.Errorf("delivery_seconds count = %d (%v), want 1", hm.GetHistogram().GetSampleCount(), err)
	}
	if lost := h.lost(); len(lost) != 0 {
		t.Errorf("undelivered: %v", lost)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	rc := newReceiver(func(i int, _ *http.Request) int {
		if i == 0 {
			return http.StatusTooManyRequests // with Retry-After: 1
		}
		return http.StatusOK
	})
	srv := httptest.NewServer(rc)
	defer srv.Close()
	e := fast(srv.URL)
	e.MaxBackoff = 5 * time.Second
	h := start(t, Configuration{Webhooks: []Endpoint{e}})
	h.d.Enqueue(testAlert("id-1", schemas.SeverityHigh))
	flush(t, h.d, 5*time.Second)
	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 900*time.Millisecond {
		t.Errorf("retried %s after a 429 with Retry-After: 1", gap)
	}
	if got := value(t, h.d.metrics.failed.WithLabelValues(h.d.Endpoints()[0], reasonStatus429)); got != 1 {
		t.Errorf("failed_total{http_429} = %v, want 1", got)
	}
}

// TestReceiverOutage closes the receiver's listener and re-opens it on
// the same port ~3 s later: alerts queued meanwhile arrive once, in order.
func TestReceiverOutage(t *testing.T) {
	rc := newReceiver(nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv1 := &http.Server{Handler: rc}
	go func() { _ = srv1.Serve(ln) }()

	e := fast("http://" + addr + "/hook")
	e.MaxAttempts, e.MaxBackoff = 40, 300*time.Millisecond // covers ≥ 6 s of outage
	h := start(t, Configuration{Webhooks: []Endpoint{e}})

	h.d.Enqueue(testAlert("before", schemas.SeverityHigh))
	flush(t, h.d, 5*time.Second)

	if err := srv1.Close(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	for _, id := range []string{"during-1", "during-2", "during-3"} {
		h.d.Enqueue(testAlert(id, schemas.SeverityHigh))
	}
	time.Sleep(3 * time.Second)

	var ln2 net.Listener
	for i := 0; ; i++ {
		if ln2, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if i == 50 {
			t.Fatalf("cannot re-open %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv2 := &http.Server{Handler: rc}
	go func() { _ = srv2.Serve(ln2) }()
	defer srv2.Close()
	t.Logf("receiver down for %s", time.Since(down).Round(time.Millisecond))

	h.d.Enqueue(testAlert("after", schemas.SeverityHigh))
	flush(t, h.d, 5*time.Second)

	if diff := cmp.Diff(rc.delivered(""), []string{"before", "during-1", "during-2", "during-3", "after"}); diff != "" {
		t.Errorf("delivered (-got +want):\n%s", diff)
	}
	if lost := h.lost(); len(lost) != 0 {
		t.Errorf("undelivered: %v", lost)
	}
	if got := value(t, h.d.metrics.failed.WithLabelValues(h.d.Endpoints()[0], reasonConnection)); got == 0 {
		t.Error("failed_total{connection} = 0, want the refused attempts counted")
	}
}

func TestPermanentError(t *testing.T) {
	rc := newReceiver(func(i int, _ *http.Request) int {
		if i == 0 {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	srv := httptest.NewServer(rc)
	defer srv.Close()
	h := start(t, Configuration{Webhooks: []Endpoint{fast(srv.URL)}})
	h.d.Enqueue(testAlert("bad", schemas.SeverityHigh))
	h.d.Enqueue(testAlert("good", schemas.SeverityHigh))
	flush(t, h.d, 5*time.Second)

	if n := len(rc.requests()); n != 2 {
		t.Errorf("%d requests, want 2 (no retry after 400)", n)
	}
	lost := h.lost()
	if len(lost) != 1 || lost[0].id != "bad" || lost[0].endpoint != h.d.Endpoints()[0] {
		t.Fatalf("undelivered = %v, want bad once", lost)
	}
	var se *StatusError
	if !errors.As(lost[0].err, &se) || se.Code != http.StatusBadRequest || !se.Permanent() {
		t.Errorf("undelivered error = %v, want a permanent *StatusError 400", lost[0].err)
	}
	label := h.d.Endpoints()[0]
	if got := value(t, h.d.metrics.undelivered.WithLabelValues(label)); got != 1 {
		t.Errorf("undelivered_total = %v, want 1", got)
	}
	if got := value(t, h.d.metrics.failed.WithLabelValues(label, reasonStatus4xx)); got != 1 {
		t.Errorf("failed_total{http_4xx} = %v, want 1", got)
	}
	if diff := cmp.Diff(rc.delivered(""), []string{"good"}); diff != "" {
		t.Errorf("delivered (-got +want):\n%s", diff)
	}
}

func TestRetriesExhausted(t *testing.T) {
	rc := newReceiver(func(int, *http.Request) int { return http.StatusInternalServerError })
	srv := httptest.NewServer(rc)
	defer srv.Close()
	e := fast(srv.URL)
	e.MaxAttempts = 3
	h := start(t, Configuration{Webhooks: []Endpoint{e}})
	h.d.Enqueue(testAlert("id-1", schemas.SeverityHigh))
	flush(t, h.d, 5*time.Second)
	if n := len(rc.requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
	lost := h.lost()
	if len(lost) != 1 {
		t.Fatalf("undelivered = %v, want one", lost)
	}
	var se *StatusError
	if !errors.As(lost[0].err, &se) || se.Code != 500 || !strings.HasPrefix(lost[0].err.Error(), "after 3 attempt(s): HTTP 500") {
		t.Errorf("undelivered error = %v", lost[0].err)
	}
}

func TestQueueOverflowDropsOldest(t *testing.T) {
	rc := newReceiver(nil).blocking()
	srv := httptest.NewServer(rc)
	defer srv.Close()
	defer rc.release()
	e := fast(srv.URL)
	e.QueueSize = 2
	h := start(t, Configuration{Webhooks: []Endpoint{e}})
	label := h.d.Endpoints()[0]

	h.d.Enqueue(testAlert("a1", schemas.SeverityHigh))
	<-rc.seen // a1 is in flight, blocked in the handler
	for _, id := range []string{"a2", "a3", "a4"} {
		if n := h.d.Enqueue(testAlert(id, schemas.SeverityHigh)); n != 1 {
			t.Errorf("Enqueue(%s) = %d, want 1 (never refused)", id, n)
		}
	}
	if got := value(t, h.d.metrics.queued.WithLabelValues(label)); got != 3 {
		t.Errorf("queued = %v, want 3 (2 waiting + 1 in flight)", got)
	}
	lost := h.lost()
	if len(lost) != 1 || lost[0].id != "a2" || !errors.Is(lost[0].err, ErrQueueFull) {
		t.Errorf("undelivered = %v, want a2 dropped with ErrQueueFull", lost)
	}
	rc.release()
	flush(t, h.d, 5*time.Second)

	if diff := cmp.Diff(rc.delivered(""), []string{"a1", "a3", "a4"}); diff != "" {
		t.Errorf("delivered (-got +want):\n%s", diff)
	}
	if got := value(t, h.d.metrics.dropped.WithLabelValues(label)); got != 1 {
		t.Errorf("dropped_total = %v, want 1", got)
	}
	if got := value(t, h.d.metrics.undelivered.WithLabelValues(label)); got != 1 {
		t.Errorf("undelivered_total = %v, want 1", got)
	}
}

func TestFlushWaits(t *testing.T) {
	rc := newReceiver(nil).blocking()
	srv := httptest.NewServer(rc)
	defer srv.Close()
	defer rc.release()
	h := start(t, Configuration{Webhooks: []Endpoint{fast(srv.URL)}})
	h.d.Enqueue(testAlert("a1", schemas.SeverityHigh))
	h.d.Enqueue(testAlert("a2", schemas.SeverityHigh))
	<-rc.seen

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := h.d.Flush(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "2 alerts still pending") {
		t.Fatalf("Flush() with a blocked receiver = %v, want deadline exceeded with 2 pending", err)
	}

	done := make(chan error, 1)
	go func() { done <- h.d.Flush(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Flush() returned %v before the receiver answered", err)
	case <-time.After(50 * time.Millisecond):
	}
	rc.release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Flush() = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Flush() did not return once delivered")
	}
	if diff := cmp.Diff(rc.delivered(""), []string{"a1", "a2"}); diff != "" {
		t.Errorf("delivered when Flush returned (-got +want):\n%s", diff)
	}
}

func TestStopDrains(t *testing.T) {
	rc := newReceiver(func(i int, _ *http.Request) int {
		time.Sleep(20 * time.Millisecond) // a slow receiver
		if i == 0 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	srv := httptest.NewServer(rc)
	defer srv.Close()
	h := start(t, Configuration{Webhooks: []Endpoint{fast(srv.URL)}})
	var want []string
	for i := range 5 {
		id := "a" + strconv.Itoa(i)
		want = append(want, id)
		h.d.Enqueue(testAlert(id, schemas.SeverityHigh))
	}
	if err := h.d.Stop(); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	if diff := cmp.Diff(rc.delivered(""), want); diff != "" {
		t.Errorf("delivered by Stop (-got +want):\n%s", diff)
	}
	if n := h.d.Enqueue(testAlert("late", schemas.SeverityHigh)); n != 0 {
		t.Errorf("Enqueue after Stop = %d, want 0", n)
	}
	lost := h.lost()
	if len(lost) != 1 || lost[0].id != "late" || !errors.Is(lost[0].err, ErrStopped) {
		t.Errorf("undelivered = %v, want late with ErrStopped", lost)
	}
	if err := h.d.Start(); err == nil {
		t.Error("Start() after Stop succeeded")
	}
}

func TestStopDeadline(t *testing.T) {
	rc := newReceiver(func(int, *http.Request) int { return http.StatusServiceUnavailable })
	srv := httptest.NewServer(rc)
	defer srv.Close()
	e := fast(srv.URL)
	e.MaxAttempts, e.InitialBackoff, e.MaxBackoff = 100, time.Second, time.Second
	h := start(t, Configuration{Webhooks: []Endpoint{e}}, WithDrainTimeout(200*time.Millisecond))
	for _, id := range []string{"a1", "a2", "a3"} {
		h.d.Enqueue(testAlert(id, schemas.SeverityHigh))
	}
	<-rc.seen
	began := time.Now()
	if err := h.d.Stop(); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("Stop took %s with a 200ms drain timeout", took)
	}
	var ids []string
	for _, l := range h.lost() {
		if !errors.Is(l.err, ErrStopped) {
			t.Errorf("undelivered %s: %v, want ErrStopped", l.id, l.err)
		}
		ids = append(ids, l.id)
	}
	if diff := cmp.Diff(ids, []string{"a1", "a2", "a3"}); diff != "" {
		t.Errorf("undelivered at shutdown (-got +want):\n%s", diff)
	}
	if got := value(t, h.d.metrics.queued.WithLabelValues(h.d.Endpoints()[0])); got != 0 {
		t.Errorf("queued after Stop = %v, want 0", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := h.d.Flush(ctx); err != nil {
		t.Errorf("Flush() after Stop = %v, want nil (nothing pending)", err)
	}
}

func TestStopBeforeStart(t *testing.T) {
	var got []string
	r := reporter.New(slog.New(slog.DiscardHandler))
	d, err := New(r, Configuration{Webhooks: []Endpoint{{URL: "http://127.0.0.1:1/x"}}},
		WithUndelivered(func(a *schemas.Alert, _ string, err error) {
			if errors.Is(err, ErrStopped) {
				got = append(got, a.ID)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	d.Enqueue(testAlert("a1", schemas.SeverityHigh))
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, []string{"a1"}); diff != "" {
		t.Errorf("undelivered (-got +want):\n%s", diff)
	}
}

func TestNewSharesRegistry(t *testing.T) {
	r := reporter.New(slog.New(slog.DiscardHandler))
	cfg := Configuration{Webhooks: []Endpoint{{URL: "http://127.0.0.1:1/x"}, {URL: "http://127.0.0.1:1/x?k=2"}}}
	for range 2 {
		d, err := New(r, cfg)
		if err != nil {
			t.Fatalf("New() = %v", err)
		}
		if diff := cmp.Diff(d.Endpoints(), []string{"http://127.0.0.1:1/x", "http://127.0.0.1:1/x (2)"}); diff != "" {
			t.Errorf("labels (-got +want):\n%s", diff)
		}
	}
	if _, err := New(r, Configuration{Webhooks: []Endpoint{{URL: ""}}}); err == nil || !strings.Contains(err.Error(), "alerts.webhooks[0].url") {
		t.Errorf("New() with an invalid configuration = %v", err)
	}
}

func TestBackoff(t *testing.T) {
	initial, maxWait := 500*time.Millisecond, 30*time.Second
	for attempt, base := range map[int]time.Duration{1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 7: 30 * time.Second, 60: 30 * time.Second} {
		for range 100 {
			if got := backoff.Delay(initial, maxWait, attempt, true); got < base/2 || got > base {
				t.Fatalf("backoff(attempt %d) = %s, want within [%s, %s]", attempt, got, base/2, base)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 0 ":                           0,
		"-5":                            0,
		"soon":                          0,
		"Wed, 01 May 2024 10:00:07 GMT": 7 * time.Second,
		"Wed, 01 May 2024 09:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestTransportErrorHidesURL(t *testing.T) {
	// A closed port: connection refused, with the query secret in the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e := fast("http://" + addr + "/x?token=SECRET")
	e.MaxAttempts = 2
	h := start(t, Configuration{Webhooks: []Endpoint{e}})
	h.d.Enqueue(testAlert("id-1", schemas.SeverityHigh))
	flush(t, h.d, 5*time.Second)
	lost := h.lost()
	if len(lost) != 1 {
		t.Fatalf("undelivered = %v", lost)
	}
	if msg := lost[0].err.Error(); strings.Contains(msg, "SECRET") || !strings.Contains(msg, "after 2 attempt(s)") {
		t.Errorf("error %q leaks the query or lacks the attempt count", msg)
	}
	b, _ := json.Marshal(h.d.Endpoints())
	if strings.Contains(string(b), "SECRET") {
		t.Errorf("labels leak the secret: %s", b)
	}
}

// value reads one counter or gauge series.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}
