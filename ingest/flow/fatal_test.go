package flow

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/internal/testutil"
)

// TestDoneWhenSocketDies closes a listener's socket under the running
// collector (as a failing dependency would): Done reports it, naming the
// listener, and /readyz says not ready. A Stop afterwards still succeeds.
func TestDoneWhenSocketDies(t *testing.T) {
	kcfg := kafka.DefaultConfiguration()
	_, addr := testutil.StartBroker(t, 1)
	kcfg.Brokers = []string{addr}
	cfg := DefaultConfiguration()
	cfg.Listen = []string{"netflow://127.0.0.1:0"}
	cfg.Readers = 1
	r := reporter.New(slog.New(slog.DiscardHandler))
	c, err := New(r, cfg, Dependencies{Kafka: kcfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.Done():
		t.Fatalf("Done fired before any fault: %v", err)
	default:
	}
	c.mu.Lock()
	name := c.listeners[0].name
	c.listeners[0].conns[0].Close()
	c.mu.Unlock()
	select {
	case err := <-c.Done():
		for _, w := range []string{"ingest.flows.listen", name, "closed"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Done error %q lacks %q", err, w)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Done did not fire within 10 s of the socket closing")
	}
	if nr := r.NotReady(); len(nr) != 1 || !strings.Contains(nr[0], "ingest.flows") {
		t.Errorf("NotReady() = %q, want the dead listener named", nr)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("Stop after the fault: %v", err)
	}
}
