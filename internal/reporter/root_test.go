package reporter

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestDefaultConfiguration(t *testing.T) {
	cfg := DefaultConfiguration()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() of the defaults: %v", err)
	}
	if cfg.Listen != "127.0.0.1:9464" {
		t.Errorf("Listen = %q, want 127.0.0.1:9464", cfg.Listen)
	}
}

func TestConfigurationValidate(t *testing.T) {
	tests := []struct {
		listen  string
		wantErr bool
	}{
		{"", false}, // disabled
		{"127.0.0.1:9464", false},
		{":0", false},
		{"[::1]:9464", false},
		{"localhost", true},
		{"127.0.0.1:9464:1", true},
	}
	for _, tt := range tests {
		err := Configuration{Listen: tt.listen}.Validate()
		if (err != nil) != tt.wantErr {
			t.Errorf("Validate(listen %q) = %v, want error: %v", tt.listen, err, tt.wantErr)
			continue
		}
		if err != nil && !strings.HasPrefix(err.Error(), "metrics.listen:") {
			t.Errorf("Validate(listen %q) error %q, want it to start with metrics.listen:", tt.listen, err)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func startServer(t *testing.T, r *Reporter) *Server {
	t.Helper()
	s := NewServer(r, Configuration{Listen: "127.0.0.1:0"})
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	if s.Addr() == "" || strings.HasSuffix(s.Addr(), ":0") {
		t.Fatalf("Addr() = %q, want the bound address", s.Addr())
	}
	return s
}

func TestReadiness(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler))
	s := startServer(t, r)
	base := "http://" + s.Addr()

	code, body := get(t, base+"/readyz")
	if code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz with no components = %d %q, want 200 \"ready\\n\"", code, body)
	}

	sink := r.Readiness("sink")
	collector := r.Readiness("ingest.flows")
	sink.NotReady("clickhouse unreachable")
	code, body = get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with components not ready = %d, want 503", code)
	}
	if want := "not ready:\ningest.flows: starting\nsink: clickhouse unreachable\n"; body != want {
		t.Errorf("/readyz body (-got +want):\n%s", cmp.Diff(body, want))
	}

	collector.Ready()
	code, body = get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || body != "not ready:\nsink: clickhouse unreachable\n" {
		t.Errorf("/readyz with only the sink not ready = %d %q", code, body)
	}
	// The same component name shares one flag.
	if diff := cmp.Diff(r.NotReady(), []string{"sink: clickhouse unreachable"}); diff != "" {
		t.Errorf("NotReady() (-got +want):\n%s", diff)
	}
	r.Readiness("sink").Ready()
	code, body = get(t, base+"/readyz")
	if code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz after Ready() = %d %q, want 200 \"ready\\n\"", code, body)
	}
	if nr := r.NotReady(); len(nr) != 0 {
		t.Errorf("NotReady() after Ready() = %q, want none", nr)
	}

	// Going back to not ready is reported again.
	sink.NotReady("broker gone")
	if code, body = get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "sink: broker gone") {
		t.Errorf("/readyz after NotReady(broker gone) = %d %q", code, body)
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler))
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "flowaudit_test_widgets_total", Help: "Widgets seen by the test."})
	r.Registry.MustRegister(c)
	c.Add(42)
	r.Readiness("never-ready") // health does not depend on readiness
	s := startServer(t, r)
	base := "http://" + s.Addr()

	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d, want 200", code)
	}
	for _, want := range []string{
		"# HELP flowaudit_test_widgets_total Widgets seen by the test.",
		"# TYPE flowaudit_test_widgets_total counter",
		"\nflowaudit_test_widgets_total 42\n",
		"go_goroutines ", // the Go collector New registers
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics does not contain %q", want)
		}
	}
	if code, _ := get(t, base+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}
}

func TestServerDisabledAndPortInUse(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler))
	off := NewServer(r, Configuration{})
	if err := off.Start(); err != nil {
		t.Fatalf("Start with metrics.listen empty: %v", err)
	}
	if off.Addr() != "" {
		t.Errorf("Addr() of a disabled server = %q, want empty", off.Addr())
	}
	if err := off.Stop(); err != nil {
		t.Errorf("Stop of a disabled server: %v", err)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = NewServer(r, Configuration{Listen: busy.Addr().String()}).Start()
	if err == nil || !strings.Contains(err.Error(), "metrics.listen") {
		t.Errorf("Start on a busy port: error %v, want one naming metrics.listen", err)
	}
}

func TestServerStop(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler))
	s := NewServer(r, Configuration{Listen: "127.0.0.1:0"})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Errorf("server still answers on %s after Stop", addr)
	}
}

func TestSampler(t *testing.T) {
	const interval = 300 * time.Millisecond
	s := NewSampler(interval)
	type result struct {
		ok         bool
		suppressed int
	}
	allow := func(key string) result {
		ok, n := s.Allow(key)
		return result{ok, n}
	}
	start := time.Now()
	got := []result{allow("a"), allow("a"), allow("a"), allow("a"), allow("b"), allow("b")}
	want := []result{{true, 0}, {false, 0}, {false, 0}, {false, 0}, {true, 0}, {false, 0}}
	if time.Since(start) >= interval {
		t.Skip("machine too slow: the burst took longer than the interval")
	}
	if diff := cmp.Diff(got, want, cmp.AllowUnexported(result{})); diff != "" {
		t.Fatalf("burst (-got +want):\n%s", diff)
	}

	time.Sleep(interval + 50*time.Millisecond)
	// After the interval one event per key passes again, with the count
	// suppressed since the last one that passed.
	got = []result{allow("a"), allow("a"), allow("b"), allow("c")}
	want = []result{{true, 3}, {false, 0}, {true, 1}, {true, 0}}
	if diff := cmp.Diff(got, want, cmp.AllowUnexported(result{})); diff != "" {
		t.Errorf("after the interval (-got +want):\n%s", diff)
	}

	time.Sleep(interval + 50*time.Millisecond)
	if ok, n := s.Allow("a"); !ok || n != 1 {
		t.Errorf("Allow(a) after a second interval = %v, %d; want true, 1", ok, n)
	}
}

// TestSamplerBounded: a flood of distinct keys is tracked up to
// SamplerMaxKeys and then shares one overflow key: one line, not one per
// key.
func TestSamplerBounded(t *testing.T) {
	s := NewSampler(time.Hour)
	passed := 0
	for i := range SamplerMaxKeys + 5000 {
		if ok, _ := s.Allow(fmt.Sprint("key-", i)); ok {
			passed++
		}
	}
	if passed != SamplerMaxKeys+1 {
		t.Errorf("%d events passed, want %d (one per tracked key and one for the overflow)", passed, SamplerMaxKeys+1)
	}
	if len(s.last) > SamplerMaxKeys+1 {
		t.Errorf("%d keys tracked, want at most %d", len(s.last), SamplerMaxKeys+1)
	}
}

func TestSamplerConcurrent(t *testing.T) {
	s := NewSampler(time.Hour)
	var mu sync.Mutex
	passed := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if ok, _ := s.Allow("k"); ok {
					mu.Lock()
					passed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if passed != 1 {
		t.Errorf("%d of 800 concurrent events passed within one interval, want 1", passed)
	}
}
