package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
)

// mountTmpfs mounts a tmpfs of size bytes on dir for the test; it skips
// when not root or when mounting is not allowed (a container).
func mountTmpfs(t *testing.T, dir string, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// fillDisk writes path until the file system under it is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	// Small writes fill the last partial megabyte too.
	for {
		if _, err := f.Write(chunk[:4096]); err != nil {
			return
		}
	}
}

func (p *pipeline) readyz() (int, string) {
	resp, err := http.Get("http://" + p.MetricsAddr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDiskFull fills the file system under data_dir while flows arrive:
// the log and /readyz say the disk is full; a restart while it is full
// exits at once saying so, not UNKNOWN_SERVER_ERROR; once space is freed
// the pipeline starts and flows arrive again.
func TestDiskFull(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{})
	dataDir := filepath.Join(p.dir, "var")
	mountTmpfs(t, dataDir, "64m")
	p.Start()
	send := func(seed int64) uint64 {
		tot, err := simulate.Run(context.Background(), simulate.Config{
			Target: p.NetFlowAddr, Protocol: simulate.ProtocolIPFIX, Rate: 20000, Count: 3000, Seed: seed,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tot.Flows
	}
	before := send(1)
	if got := waitFlows(t, ch, before, 60*time.Second); got != before {
		t.Fatalf("rows before the disk filled = %d, want %d", got, before)
	}

	filler := filepath.Join(dataDir, "filler")
	fillDisk(t, filler)
	send(2)
	p.waitLog("disk full: the embedded broker cannot store records", 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := p.readyz()
		if code == http.StatusServiceUnavailable && strings.Contains(body, "broker: disk full under data_dir") {
			t.Logf("/readyz while the disk is full: %s", strings.TrimSpace(body))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %q, want 503 naming the full disk", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(p.Logs(), "UNKNOWN_SERVER_ERROR") && !strings.Contains(p.Logs(), "no space left on device") {
		t.Error("UNKNOWN_SERVER_ERROR logged without the disk being named")
	}
	for _, line := range strings.Split(p.Logs(), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "UNKNOWN_SERVER_ERROR") {
			t.Logf("while full: %s", line)
		}
	}
	p.Kill()

	// A restart while the disk is full says what is wrong and exits.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "run", "--config", p.config).CombinedOutput()
	var ee *exec.ExitError
	t.Logf("restart on a full disk:\n%s", out)
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("restart on a full disk: %v, want exit 1; output:\n%s", err, out)
	}
	for _, want := range []string{"disk full under " + filepath.Join(dataDir, "kafka"), "free some space"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("restart on a full disk does not say %q:\n%s", want, out)
		}
	}

	// Space freed: it starts, and flows arrive again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p.Start()
	after := send(3)
	if got := waitFlows(t, ch, before+after, 60*time.Second); got < before+after {
		t.Errorf("rows after space was freed = %d, want at least %d", got, before+after)
	}
}
