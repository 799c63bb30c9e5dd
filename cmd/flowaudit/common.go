package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
	"github.com/flowaudit/flowaudit/internal/reporter"
)

// stageFlags are the flags every stage command shares.
type stageFlags struct {
	config string
	check  bool
}

func newFlagSet(name, synopsis, description string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: flowaudit %s %s\n\n%s\n\nFlags:\n", name, synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}

func (s *stageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.config, "config", "", "YAML configuration `file` (default: built-in defaults)")
	fs.BoolVar(&s.check, "check", false, "validate the configuration, build every component, start nothing, and exit")
}

// parseFlags parses args; it returns (exit code, done) when the command
// must stop (help or a flag error).
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "flowaudit %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return 2, true
	}
	return 0, false
}

func loadConfig(path string, stderr io.Writer) (config.Configuration, bool) {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return cfg, false
	}
	return cfg, true
}

func newLogger(cfg config.LogConfiguration, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// lifecycle starts components in order and stops them in reverse.
type lifecycle struct {
	log     *slog.Logger
	started []startedComponent
	fatal   []<-chan error

	// deadline bounds stop once a signal or a failure started it: past
	// it the process exits with status 1 (exit, os.Exit by default),
	// naming the component still stopping. Signals that arrive while
	// stopping are logged and ignored, so a second SIGTERM cannot cut the
	// final flush short.
	deadline time.Duration
	exit     func(code int)
	sig      chan os.Signal
	stopping atomic.Pointer[string]
	// cause, when set, names a fault known to make components fail.
	cause func() error
}

type startedComponent struct {
	name string
	stop func() error
}

func (l *lifecycle) start(name string, start func() error, stop func() error) error {
	if err := start(); err != nil {
		return fmt.Errorf("unable to start %s: %w", name, err)
	}
	l.started = append(l.started, startedComponent{name, stop})
	return nil
}

func (l *lifecycle) watch(ch <-chan error) { l.fatal = append(l.fatal, ch) }

// wait blocks until SIGINT/SIGTERM or a component reports a fatal error.
// The signals stay caught afterwards: stop ignores them.
func (l *lifecycle) wait() error {
	l.sig = make(chan os.Signal, 4)
	signal.Notify(l.sig, syscall.SIGINT, syscall.SIGTERM)
	fatal := make(chan error, 1)
	for _, ch := range l.fatal {
		go func(ch <-chan error) {
			if err, ok := <-ch; ok && err != nil {
				select {
				case fatal <- err:
				default:
				}
			}
		}(ch)
	}
	select {
	case s := <-l.sig:
		l.log.Info("stopping", "signal", s.String(), "deadline", l.deadline)
		return nil
	case err := <-fatal:
		attrs := []any{"err", err, "deadline", l.deadline}
		if l.cause != nil {
			// The failure is often the consequence of a fault elsewhere
			// (a full disk under the broker): name it.
			if c := l.cause(); c != nil {
				attrs = append(attrs, "cause", c.Error())
				err = fmt.Errorf("%w (cause: %w)", err, c)
			}
		}
		l.log.Error("a component failed; stopping", attrs...)
		return err
	}
}

// stop stops started components in reverse order. After wait it holds
// the signals and enforces the deadline.
func (l *lifecycle) stop() error {
	if l.sig != nil {
		done := make(chan struct{})
		defer close(done)
		go l.guardStop(done)
	}
	var errs []error
	for i := len(l.started) - 1; i >= 0; i-- {
		c := l.started[i]
		l.stopping.Store(&c.name)
		t := time.Now()
		if err := c.stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping %s: %w", c.name, err))
			l.log.Error("stop failed", "component", c.name, "err", err)
		} else {
			l.log.Debug("stopped", "component", c.name, "took", time.Since(t))
		}
	}
	return errors.Join(errs...)
}

// guardStop ignores signals until stop is done and exits the process if
// the deadline passes first.
func (l *lifecycle) guardStop(done <-chan struct{}) {
	defer signal.Stop(l.sig)
	end := time.Now().Add(l.deadline)
	timer := time.NewTimer(l.deadline)
	defer timer.Stop()
	for {
		select {
		case <-done:
			return
		case s := <-l.sig:
			l.log.Warn("already stopping: signal ignored until the shutdown deadline", "signal", s.String(),
				"deadline_in", time.Until(end).Round(100*time.Millisecond))
		case <-timer.C:
			name := ""
			if p := l.stopping.Load(); p != nil {
				name = *p
			}
			l.log.Error("shutdown deadline passed; exiting before every component stopped", "deadline", l.deadline, "stopping", name)
			exit := l.exit
			if exit == nil {
				exit = os.Exit
			}
			exit(1)
			return
		}
	}
}

func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v + " " + bi.GoVersion
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "", "Print the version of this binary.", stderr)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	fmt.Fprintln(stdout, "flowaudit", version())
	return 0
}

// metricSum sums every sample of a counter or gauge family by name.
func metricSum(r *reporter.Reporter, name string) float64 {
	mfs, err := r.Registry.Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			}
		}
	}
	return total
}

// statusLoop logs one progress line every interval until ctx ends.
func statusLoop(ctx context.Context, r *reporter.Reporter, interval time.Duration, collector, sink bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		attrs := []any{}
		if collector {
			attrs = append(attrs,
				"datagrams", int64(metricSum(r, "flowaudit_ingest_datagrams_read_total")),
				"flows_received", int64(metricSum(r, "flowaudit_ingest_flows_total")),
				"flows_accepted", int64(metricSum(r, "flowaudit_ingest_produced_flows_total")),
				"decode_errors", int64(metricSum(r, "flowaudit_ingest_decode_errors_total")))
		}
		if sink {
			attrs = append(attrs,
				"rows_inserted", int64(metricSum(r, "flowaudit_sink_rows_total")),
				"pending", int64(metricSum(r, "flowaudit_sink_pending_rows")),
				"lag", int64(metricSum(r, "flowaudit_sink_consumer_lag")))
		}
		if nr := r.NotReady(); len(nr) > 0 {
			attrs = append(attrs, "not_ready", strings.Join(nr, "; "))
		}
		r.Logger.Info("status", attrs...)
	}
}
