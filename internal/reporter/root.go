// Package reporter gives every component its logger, its Prometheus
// registry and a way to report readiness, and serves them over HTTP
// (/metrics, /healthz, /readyz) on metrics.listen.
package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Reporter is shared by every component of a process. It is safe for
// concurrent use.
type Reporter struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry

	mu     sync.Mutex
	checks map[string]*atomic.Pointer[string] // component -> nil when ready, else why not
}

// New returns a reporter logging to logger with a fresh registry holding
// the Go and process collectors.
func New(logger *slog.Logger) *Reporter {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Reporter{Logger: logger, Registry: reg, checks: map[string]*atomic.Pointer[string]{}}
}

// Readiness returns a handle a component uses to say whether it is ready.
// A new handle starts "not ready: starting".
func (r *Reporter) Readiness(component string) *Readiness {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.checks[component]
	if !ok {
		p = &atomic.Pointer[string]{}
		why := "starting"
		p.Store(&why)
		r.checks[component] = p
	}
	return &Readiness{p: p}
}

// NotReady lists the components that are not ready, with why; empty when
// all are.
func (r *Reporter) NotReady() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for name, p := range r.checks {
		if why := p.Load(); why != nil {
			out = append(out, name+": "+*why)
		}
	}
	sort.Strings(out)
	return out
}

// Readiness is one component's ready flag.
type Readiness struct{ p *atomic.Pointer[string] }

// Ready marks the component ready.
func (r *Readiness) Ready() { r.p.Store(nil) }

// NotReady marks the component not ready, saying why.
func (r *Readiness) NotReady(why string) { r.p.Store(&why) }

// Configuration is the metrics section of the configuration file.
type Configuration struct {
	// Listen is where /metrics, /healthz and /readyz are served; empty
	// disables the HTTP server.
	Listen string `yaml:"listen"`
}

// DefaultConfiguration returns the default metrics configuration.
func DefaultConfiguration() Configuration {
	return Configuration{Listen: "127.0.0.1:9464"}
}

// Validate checks the configuration; errors name the key.
func (c Configuration) Validate() error {
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("metrics.listen: %q is not host:port (or empty to disable)", c.Listen)
	}
	return nil
}

// Server serves the reporter over HTTP.
type Server struct {
	r      *Reporter
	cfg    Configuration
	srv    *http.Server
	ln     net.Listener
	doneCh chan error
}

// NewServer prepares the HTTP server; Start listens.
func NewServer(r *Reporter, cfg Configuration) *Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.Registry, promhttp.HandlerOpts{Registry: r.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if nr := r.NotReady(); len(nr) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:\n"+strings.Join(nr, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return &Server{r: r, cfg: cfg, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
}

// Start listens on metrics.listen (no-op when empty).
func (s *Server) Start() error {
	if s.cfg.Listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen: cannot listen on %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.doneCh = make(chan error, 1)
	go func() { s.doneCh <- s.srv.Serve(ln) }()
	s.r.Logger.Info("metrics server listening", "addr", ln.Addr().String(), "paths", "/metrics /healthz /readyz")
	return nil
}

// Addr returns the bound address, or "" when not listening.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Stop shuts the server down within 2 s.
func (s *Server) Stop() error {
	if s.ln == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.doneCh; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Bounds of a Sampler.
const (
	// SamplerMaxKeys is how many keys a Sampler tracks at most.
	SamplerMaxKeys = 10000
	// SamplerOverflowKey is the key events share once SamplerMaxKeys
	// keys are tracked.
	SamplerOverflowKey = "(overflow)"
)

// Sampler passes at most one event per interval per key, counting what it
// suppressed, so per-flow errors can be logged without flooding.
type Sampler struct {
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
	dropped  map[string]int
	swept    time.Time
}

// NewSampler returns a sampler letting one event per key through every
// interval.
func NewSampler(interval time.Duration) *Sampler {
	return &Sampler{interval: interval, last: map[string]time.Time{}, dropped: map[string]int{}}
}

// Allow reports whether an event for key may be logged now, and how many
// were suppressed since the last allowed one.
//
// Memory is bounded: once SamplerMaxKeys keys are tracked, keys whose
// interval has passed are forgotten, and if none has, a new key shares
// the sampling of SamplerOverflowKey. Callers should still key by
// bounded values (a reason, a metric label), never by what a sender
// chooses (its address): a flood of new keys must not turn into a flood
// of lines.
func (s *Sampler) Allow(key string) (ok bool, suppressed int) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, seen := s.last[key]
	if !seen && len(s.last) >= SamplerMaxKeys {
		// At most one sweep per interval: a flood of new keys must not
		// cost a sweep each.
		if now.Sub(s.swept) >= s.interval {
			s.swept = now
			for k, lt := range s.last {
				if now.Sub(lt) >= s.interval && s.dropped[k] == 0 {
					delete(s.last, k)
					delete(s.dropped, k)
				}
			}
		}
		if len(s.last) >= SamplerMaxKeys {
			key = SamplerOverflowKey
			t, seen = s.last[key]
		}
	}
	if seen && now.Sub(t) < s.interval {
		s.dropped[key]++
		return false, 0
	}
	s.last[key] = now
	n := s.dropped[key]
	s.dropped[key] = 0
	return true, n
}
