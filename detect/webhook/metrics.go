package webhook

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are labelled by endpoint: the endpoint's Name, or its URL's
// scheme, host and path with secrets removed (see endpointLabel).
type metrics struct {
	sent        *prometheus.CounterVec // endpoint
	failed      *prometheus.CounterVec // endpoint, reason
	undelivered *prometheus.CounterVec // endpoint
	dropped     *prometheus.CounterVec // endpoint
	queued      *prometheus.GaugeVec   // endpoint
	delivery    *prometheus.HistogramVec
}

// Reasons of flowaudit_webhook_failed_total.
const (
	reasonTimeout    = "timeout"     // the attempt's timeout expired
	reasonConnection = "connection"  // refused, reset, DNS, TLS…
	reasonStatus429  = "http_429"    // retried, honouring Retry-After
	reasonStatus5xx  = "http_5xx"    // retried (and 408)
	reasonStatus4xx  = "http_4xx"    // permanent
	reasonStatusMisc = "http_other"  // 1xx/3xx: permanent (redirects are not followed)
	reasonShutdown   = "shutdown"    // aborted by Stop's deadline
	reasonEncode     = "encode"      // the alert could not be encoded (permanent)
	reasonRequest    = "bad_request" // the request could not be built (permanent)
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_webhook_sent_total", Help: "Alerts delivered (2xx), per endpoint.",
		}, []string{"endpoint"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_webhook_failed_total", Help: "Delivery attempts that failed, per endpoint and reason (timeout, connection, http_429, http_5xx, http_4xx, http_other, shutdown, encode, bad_request).",
		}, []string{"endpoint", "reason"}),
		undelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_webhook_undelivered_total", Help: "Alerts given up on, per endpoint: retries exhausted, permanent error, dropped from a full queue, or left at shutdown.",
		}, []string{"endpoint"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowaudit_webhook_dropped_total", Help: "Alerts dropped because the endpoint's queue was full (oldest first); also counted as undelivered.",
		}, []string{"endpoint"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "flowaudit_webhook_queued", Help: "Alerts accepted for an endpoint and not yet delivered or given up (waiting or in flight).",
		}, []string{"endpoint"}),
		delivery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flowaudit_webhook_delivery_seconds",
			Help:    "Time from Enqueue to a 2xx answer, retries and queueing included, per endpoint.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"endpoint"}),
	}
	var err error
	m.sent, err = registerOrReuse(reg, m.sent, err)
	m.failed, err = registerOrReuse(reg, m.failed, err)
	m.undelivered, err = registerOrReuse(reg, m.undelivered, err)
	m.dropped, err = registerOrReuse(reg, m.dropped, err)
	m.queued, err = registerOrReuse(reg, m.queued, err)
	m.delivery, err = registerOrReuse(reg, m.delivery, err)
	if err != nil {
		return nil, fmt.Errorf("unable to register webhook metrics: %w", err)
	}
	return m, nil
}

// registerOrReuse registers c, or returns the identical collector already
// registered, so a second dispatcher on one registry (tests, a restarted
// stage) shares the series instead of failing. It does nothing once err
// is set.
func registerOrReuse[T prometheus.Collector](reg prometheus.Registerer, c T, err error) (T, error) {
	if err != nil {
		return c, err
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
