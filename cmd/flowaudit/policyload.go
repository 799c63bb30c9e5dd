package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/flowaudit/flowaudit/policy"
)

// policyUser is a stage that judges by the policy: the enrich stage
// (verdicts) and the detect stage (segment tags). Both are given the same
// compiled Matcher, so they never judge by two versions for longer than
// a detect poll.
type policyUser interface {
	ApplyPolicy(m *policy.Matcher, content []byte)
	RejectPolicy(err error)
}

// policyLoader is the process's one reader of policy.file: it loads it
// once at start, re-reads it when it changes (every interval) or on
// SIGHUP, and hands each valid version to every user. An invalid file is
// refused (every user counts it) and the current policy stays in force.
type policyLoader struct {
	path     string
	interval time.Duration
	log      *slog.Logger

	mu      sync.Mutex // serializes check (ticker and tests)
	users   []policyUser
	matcher *policy.Matcher
	content []byte
	stamp   policyStamp

	cancel context.CancelFunc
	done   chan struct{}
}

type policyStamp struct {
	mod  time.Time
	size int64
}

// newPolicyLoader loads and compiles path; an invalid policy is an error
// naming its line.
func newPolicyLoader(path string, interval time.Duration, log *slog.Logger) (*policyLoader, error) {
	l := &policyLoader{path: path, interval: interval, log: log.With("component", "policy")}
	if path == "" {
		return l, nil // no policy: SIGHUP is still caught, and says so
	}
	m, content, stamp, err := readPolicy(path)
	if err != nil {
		return nil, fmt.Errorf("policy.file: %w", err)
	}
	l.matcher, l.content, l.stamp = m, content, stamp
	return l, nil
}

func readPolicy(path string) (*policy.Matcher, []byte, policyStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, policyStamp{}, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, policyStamp{}, fmt.Errorf("unable to read policy file: %w", err)
	}
	p, err := policy.Parse(data, path)
	if err != nil {
		return nil, nil, policyStamp{}, err
	}
	m, err := policy.Compile(p)
	if err != nil {
		return nil, nil, policyStamp{}, err
	}
	return m, data, policyStamp{st.ModTime(), st.Size()}, nil
}

// current is the policy in force and the file it came from.
func (l *policyLoader) current() (*policy.Matcher, []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.matcher, l.content
}

// use adds a stage that is given every reloaded policy.
func (l *policyLoader) use(u policyUser) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.users = append(l.users, u)
}

// check re-reads the file if it changed (or when force is set) and
// applies it to every user. It reports whether a new policy is in force.
func (l *policyLoader) check(force bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.path == "" {
		if force {
			l.log.Info("SIGHUP: no policy.file is configured, nothing to reload")
		}
		return false
	}
	st, err := os.Stat(l.path)
	if err != nil {
		l.log.Warn("cannot read policy file; keeping the current policy", "file", l.path, "err", err)
		return false
	}
	if !force && st.ModTime().Equal(l.stamp.mod) && st.Size() == l.stamp.size {
		return false
	}
	m, content, stamp, err := readPolicy(l.path)
	if err != nil {
		l.stamp = policyStamp{st.ModTime(), st.Size()} // do not retry the same bad file every tick
		l.log.Error("new policy is invalid; keeping the current one", "file", l.path, "err", err)
		for _, u := range l.users {
			u.RejectPolicy(err)
		}
		return false
	}
	l.matcher, l.content, l.stamp = m, content, stamp
	for _, u := range l.users {
		u.ApplyPolicy(m, content)
	}
	l.log.Info("policy reloaded", "file", l.path, "summary", m.Policy().Summary(), "stages", len(l.users))
	return true
}

// Start watches the file and SIGHUP.
func (l *policyLoader) Start() error {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer close(l.done)
		defer signal.Stop(hup)
		t := time.NewTicker(l.interval)
		defer t.Stop()
		for {
			force := false
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-hup:
				force = true
			}
			l.check(force)
		}
	}()
	return nil
}

// Stop ends the watch.
func (l *policyLoader) Stop() error {
	if l.cancel != nil {
		l.cancel()
		<-l.done
	}
	return nil
}
