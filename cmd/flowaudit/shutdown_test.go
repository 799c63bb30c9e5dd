package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
)

// waitLog waits until the pipeline's logs contain s.
func (p *pipeline) waitLog(s string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Logs(), s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("no log line with %q after %s", s, timeout)
}

// TestSecondSignalDuringShutdown sends SIGTERM while the sink's final
// flush is retrying against a stopped ClickHouse, then SIGTERM again: the
// second one is logged and ignored, and the process still finishes its
// stop (the flush gives up at sink.shutdown_timeout) and exits 0, not 143.
func TestSecondSignalDuringShutdown(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{sinkYAML: "  shutdown_timeout: 3s"})
	p.Start()
	ch.Stop(t)
	if _, err := simulate.Run(context.Background(), simulate.Config{
		Target: p.NetFlowAddr, Protocol: simulate.ProtocolIPFIX, Rate: 20000, Count: 3000, Seed: 5,
	}); err != nil {
		t.Fatal(err)
	}
	p.WaitMetric("flowaudit_sink_pending_rows", 1, 30*time.Second)

	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(`msg=stopping signal=terminated`, 10*time.Second)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(`already stopping: signal ignored until the shutdown deadline`, 10*time.Second)
	select {
	case <-done:
		t.Fatalf("flowaudit exited on the second SIGTERM (exit %d)", cmd.ProcessState.ExitCode())
	default:
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("flowaudit did not finish stopping within 60 s")
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after two SIGTERMs, want 0 (a clean stop)", code)
	}
	logs := p.Logs()
	for _, want := range []string{"final flush incomplete", "stopped cleanly"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
}
