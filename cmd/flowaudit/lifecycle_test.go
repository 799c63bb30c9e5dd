package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
	"github.com/flowaudit/flowaudit/policy"
)

// TestLifecycleComponentDeath: a component whose Done fires ends wait
// with its error, and stop then stops every started component in
// reverse order.
func TestLifecycleComponentDeath(t *testing.T) {
	var order []string
	lc := &lifecycle{log: slog.New(slog.DiscardHandler), deadline: 10 * time.Second,
		exit: func(code int) { t.Errorf("exit(%d) before the deadline", code) }}
	dying := make(chan error, 1)
	for _, name := range []string{"a", "b", "c"} {
		if err := lc.start(name, func() error { return nil }, func() error { order = append(order, name); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	lc.watch(make(chan error))
	lc.watch(dying)
	dying <- errors.New("listener gone")
	done := make(chan error, 1)
	go func() { done <- lc.wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "listener gone") {
			t.Fatalf("wait() = %v, want the component's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return after a component died")
	}
	if err := lc.stop(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(order, []string{"c", "b", "a"}); diff != "" {
		t.Errorf("stop order (-got +want):\n%s", diff)
	}
}

// TestLifecycleOneDeadline: components whose stops together take longer
// than the deadline do not stretch it: the process exits with 1 at the
// one deadline, naming the component still stopping.
func TestLifecycleOneDeadline(t *testing.T) {
	const deadline = 300 * time.Millisecond
	exited := make(chan int, 1)
	lc := &lifecycle{log: slog.New(slog.DiscardHandler), deadline: deadline,
		exit: func(code int) { exited <- code }}
	release := make(chan struct{})
	defer close(release)
	slow := func() error { // each stop alone fits in the deadline, two do not
		select {
		case <-time.After(200 * time.Millisecond):
		case <-release:
		}
		return nil
	}
	for _, name := range []string{"first", "second", "third"} {
		if err := lc.start(name, func() error { return nil }, slow); err != nil {
			t.Fatal(err)
		}
	}
	// As after wait: signals held, deadline enforced.
	lc.sig = make(chan os.Signal, 1)
	start := time.Now()
	go func() { _ = lc.stop() }()
	select {
	case code := <-exited:
		if code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
		if took := time.Since(start); took < deadline || took > deadline+2*time.Second {
			t.Errorf("exited after %s, want at the deadline %s", took, deadline)
		}
		if p := lc.stopping.Load(); p == nil || *p != "second" {
			t.Errorf("stopping = %v at the deadline, want second", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit at the deadline")
	}
}

func TestShutdownDeadlineIsOneNumber(t *testing.T) {
	cfg := config.Default()
	if got := shutdownDeadline(cfg); got != 60*time.Second {
		t.Errorf("default deadline %s, want 60s", got)
	}
	if err := config.Parse([]byte("shutdown_timeout: 10s\nsink:\n  shutdown_timeout: 15s\n"), &cfg); err == nil ||
		!strings.Contains(err.Error(), "sink.shutdown_timeout") || !strings.Contains(err.Error(), "shutdown_timeout (10s)") {
		t.Errorf("a sink flush longer than the whole stop: err = %v, want it named", err)
	}
	cfg = config.Default()
	if err := config.Parse([]byte("shutdown_timeout: 20s\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if got := shutdownDeadline(cfg); got != 20*time.Second {
		t.Errorf("deadline %s, want shutdown_timeout 20s", got)
	}
}

// policyRecorder is a stage judging by the policy.
type policyRecorder struct {
	mu       sync.Mutex
	applied  []*policy.Matcher
	rejected int
}

func (r *policyRecorder) ApplyPolicy(m *policy.Matcher, _ []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applied = append(r.applied, m)
}

func (r *policyRecorder) RejectPolicy(error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected++
}

// TestPolicyLoaderOneVersion: the policy is read once and every stage
// (enrich and detect in run) is given the same compiled version on a
// change, on a forced check (SIGHUP) and on a SIGHUP itself; an invalid
// change reaches no stage and every stage counts it.
func TestPolicyLoaderOneVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	v1 := "segments:\n  - name: web\n    cidrs: [10.1.0.0/16]\ndefault: deny\n"
	v2 := "segments:\n  - name: web\n    cidrs: [10.1.0.0/16]\n  - name: db\n    cidrs: [10.2.0.0/16]\ndefault: deny\n"
	if err := os.WriteFile(path, []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := newPolicyLoader(path, time.Hour, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	m, content := l.current()
	if m == nil || string(content) != v1 {
		t.Fatalf("current() = %v, %q; want the file as loaded", m, content)
	}
	enrich, detect := &policyRecorder{}, &policyRecorder{}
	l.use(enrich)
	l.use(detect)
	if l.check(false) {
		t.Error("check reloaded an unchanged file")
	}
	if err := os.WriteFile(path, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	if !l.check(false) {
		t.Fatal("check did not apply the changed file")
	}
	m2, _ := l.current()
	if got := m2.Policy().Summary(); !strings.Contains(got, "2 segments") {
		t.Errorf("reloaded policy %q, want the new file's 2 segments", got)
	}
	if err := os.WriteFile(path, []byte("segments:\n  - name: web\n    cidrs: [not-a-cidr]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l.check(false) {
		t.Error("an invalid file was applied")
	}
	if m3, _ := l.current(); m3 != m2 {
		t.Error("an invalid file replaced the policy in force")
	}
	// SIGHUP forces a check: the valid v2 again, to both.
	if err := os.WriteFile(path, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		enrich.mu.Lock()
		n := len(enrich.applied)
		enrich.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP: enrich applied %d policies, want 2", n)
		}
	}
	l.Stop()
	m4, _ := l.current()
	for name, r := range map[string]*policyRecorder{"enrich": enrich, "detect": detect} {
		if diff := cmp.Diff(r.applied, []*policy.Matcher{m2, m4}, cmp.Comparer(func(a, b *policy.Matcher) bool { return a == b })); diff != "" {
			t.Errorf("%s was given other versions than the loader holds (-got +want):\n%s", name, diff)
		}
		if r.rejected != 1 {
			t.Errorf("%s counted %d rejected files, want 1", name, r.rejected)
		}
	}
}
