package main

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil"
)

// TestDeadDependencyStopsRun breaks the flow listener's socket under a
// running "flowaudit run" from outside the process: `ss -K` (the kernel's
// SOCK_DESTROY) aborts the UDP socket over and over, so every read fails,
// as when the interface or the socket is taken away. The collector gives
// up on the socket after 5 s of failing reads; the process must then stop
// on its own with a non-zero exit, naming the listener, within
// shutdown_timeout — not keep running deaf.
func TestDeadDependencyStopsRun(t *testing.T) {
	ss, err := exec.LookPath("ss")
	if err != nil {
		if testutil.RequireExternal() {
			t.Fatal("ss (iproute2) is needed to destroy a socket from outside the process")
		}
		t.Skip("ss (iproute2) not installed")
	}
	ch := testutil.StartClickHouse(t)
	const deadline = 10 * time.Second
	const giveUp = 5 * time.Second // ingest/flow readFailureLimit
	p := newPipeline(t, ch, pipelineOptions{
		extraYAML: fmt.Sprintf("shutdown_timeout: %s\n", deadline),
		sinkYAML:  "  shutdown_timeout: 5s",
	})
	p.Start()
	_, port, err := net.SplitHostPort(p.NetFlowAddr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()

	start := time.Now()
	aborted := 0
	limit := time.After(giveUp + deadline + 20*time.Second)
loop:
	for {
		select {
		case <-done:
			break loop
		case <-limit:
			t.Fatalf("flowaudit still running %s after its flow socket started failing (%d aborts; shutdown_timeout %s)",
				time.Since(start).Round(time.Second), aborted, deadline)
		default:
		}
		out, err := exec.Command(ss, "-K", "-u", "-a", "-n", "sport = :"+port).CombinedOutput()
		if err != nil {
			t.Fatalf("ss -K: %v\n%s", err, out)
		}
		if strings.Contains(string(out), ":"+port) {
			aborted++
		} else if aborted == 0 {
			t.Fatalf("ss -K did not list the flow listener's socket on port %s:\n%s", port, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	if code := cmd.ProcessState.ExitCode(); code == 0 || code == -1 {
		t.Errorf("exit code %d after the flow socket died, want a non-zero exit", code)
	}
	if took < giveUp {
		t.Errorf("exited %s after the first abort, before the collector's %s of failing reads", took.Round(100*time.Millisecond), giveUp)
	}
	if took > giveUp+deadline+5*time.Second {
		t.Errorf("exited %s after the first abort, past %s of failing reads + shutdown_timeout %s (+5 s)", took.Round(100*time.Millisecond), giveUp, deadline)
	}
	logs := p.Logs()
	for _, want := range []string{"ingest.flows.listen: netflow://" + p.NetFlowAddr + ": reads failing for 5s"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	t.Logf("exit %d, %s after the first of %d aborts", cmd.ProcessState.ExitCode(), took.Round(100*time.Millisecond), aborted)
}
