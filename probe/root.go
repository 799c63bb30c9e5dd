// Package probe is flowaudit's active segmentation test. From the policy
// it plans the checks that prove a boundary (every allowed port, the ports
// attackers try first, a sample of denied ports, ICMP echo), makes a real
// connection attempt for each from the prober's own segment, rate-limited
// and bounded in count and time, and judges every observation against
// the policy: an expected-deny that connects is a breach, an
// expected-allow that is dropped is blocked.
//
// Targets are only ever addresses of the policy's declared segments.
// Results go to the probe_results table and breaches become
// segmentation_breach alerts (see store.go); `flowaudit probe` runs one
// test, and the Component runs them on probe.schedule inside `run`.
package probe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"golang.org/x/time/rate"

	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// LocalAddrs returns this host's unicast addresses (no loopback, no
// link-local), sorted.
func LocalAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr().Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
			continue
		}
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// ResolveSource decides where a prober with the local addresses local
// probes from. With from set, a local address in that segment (for
// policy.External: in no declared segment) is required, and the first one
// is bound. Without it, the one declared segment the local addresses are
// in; External when none is; an error when they span several.
func ResolveSource(m *policy.Matcher, from string, local []netip.Addr) (Source, error) {
	bySeg := map[string][]netip.Addr{}
	for _, a := range local {
		seg := m.Lookup(schemas.AddrFromNetip(a)).Segment
		bySeg[seg] = append(bySeg[seg], a)
	}
	if from != "" {
		addrs := bySeg[from]
		if len(addrs) == 0 {
			return Source{}, fmt.Errorf("--from-segment %s: this host has no address in segment %s (its addresses: %v); run the prober on a host of that segment", from, from, local)
		}
		return Source{Segment: from, Addr: addrs[0]}, nil
	}
	var segs []string
	for seg := range bySeg {
		if seg != policy.External {
			segs = append(segs, seg)
		}
	}
	sort.Strings(segs)
	switch len(segs) {
	case 0:
		if addrs := bySeg[policy.External]; len(addrs) > 0 {
			return Source{Segment: policy.External, Addr: addrs[0]}, nil
		}
		return Source{}, errors.New("this host has no address to probe from")
	case 1:
		return Source{Segment: segs[0], Addr: bySeg[segs[0]][0]}, nil
	}
	return Source{}, fmt.Errorf("this host has addresses in segments %s: choose one with --from-segment (or probe.from_segment)", strings.Join(segs, ", "))
}

// RunOptions name a run.
type RunOptions struct {
	Prober string    // host name of the prober; os.Hostname() when ""
	Now    time.Time // start of the run; time.Now() when zero
	Logger *slog.Logger
}

// Run plans and runs one segmentation test from src. It fails without
// probing anything when the plan exceeds cfg.MaxAttempts; once started it
// stops at cfg.MaxDuration or when ctx ends, counting the checks not
// attempted as skipped.
func Run(ctx context.Context, cfg Configuration, m *policy.Matcher, src Source, opts RunOptions) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{Prober: opts.Prober, Source: src, Start: opts.Now}
	if rep.Prober == "" {
		rep.Prober, _ = os.Hostname()
	}
	if rep.Start.IsZero() {
		rep.Start = time.Now()
	}
	rep.RunID = runID(rep.Start, rep.Prober, src.Segment)

	icmpOK := cfg.ICMP
	if cfg.ICMP {
		probeAddr := src.Addr
		if !probeAddr.IsValid() {
			probeAddr = netip.IPv4Unspecified()
		}
		if err := ICMPAvailable(probeAddr); err != nil {
			icmpOK = false
			rep.ICMPSkipped = err.Error()
			log.Warn("ICMP echo not probed: no ICMP socket (run as root, or allow ping sockets with net.ipv4.ping_group_range)", "err", err)
		}
	}
	plan, err := BuildPlan(m, src, PlanOptions{TargetsPerSegment: cfg.TargetsPerSegment, DeniedSample: cfg.DeniedSample, ICMP: icmpOK})
	if err != nil {
		return nil, err
	}
	rep.IdentityOnly = plan.IdentityOnly
	if len(plan.Checks) > cfg.MaxAttempts {
		return nil, fmt.Errorf("the plan has %d attempts, more than probe.max_attempts (%d): raise it, or lower probe.targets_per_segment / probe.denied_sample",
			len(plan.Checks), cfg.MaxAttempts)
	}
	for i := range plan.Checks {
		if err := inScope(m, &plan.Checks[i]); err != nil {
			return nil, err
		}
	}
	log.Info("probing", "run_id", rep.RunID, "from", src.Segment, "src_addr", addrString(src.Addr), "attempts", len(plan.Checks),
		"rate", cfg.Rate, "timeout", cfg.Timeout)

	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancel()
	limiter := rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	p := &prober{timeout: cfg.Timeout}
	// Enough workers to keep the rate while each attempt may wait a full
	// timeout.
	workers := int(math.Ceil(cfg.Rate*cfg.Timeout.Seconds())) + 1
	workers = max(1, min(workers, 256, len(plan.Checks)))
	results := make([]*Result, len(plan.Checks))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c := &plan.Checks[i]
				t := time.Now()
				a := p.do(ctx, c)
				if a.observed == ObservedFiltered && ctx.Err() != nil && time.Since(t) < cfg.Timeout {
					continue // cut short by the run's end: not an observation
				}
				res := &Result{Check: *c, Time: t, Observed: a.observed, RTT: a.rtt, Detail: a.detail}
				if a.local.IsValid() {
					res.SrcAddr = a.local
				}
				res.Result = outcome(c.Expected, a.observed)
				results[i] = res
			}
		}()
	}
feed:
	for i := range plan.Checks {
		if err := limiter.Wait(ctx); err != nil {
			break
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for _, res := range results {
		if res == nil {
			rep.Summary.Skipped++
			continue
		}
		rep.Results = append(rep.Results, *res)
	}
	rep.End = time.Now()
	rep.finish()
	return rep, nil
}

// inScope refuses a check whose target is not in a declared segment, or
// not in the segment the plan says: a guard against a planning mistake
// ever sending a packet outside the policy's address space.
func inScope(m *policy.Matcher, c *Check) error {
	seg := m.Lookup(schemas.AddrFromNetip(c.DstAddr)).Segment
	if seg == policy.External || seg != c.DstSegment || seg == c.SrcSegment {
		return fmt.Errorf("refusing to probe %s: it is in segment %q, planned as %q from %q", c.DstAddr, seg, c.DstSegment, c.SrcSegment)
	}
	return nil
}

// runID names a run: its start (UTC, seconds), the prober and its segment,
// plus a short hash so two probers with one name never collide.
func runID(start time.Time, prober, segment string) string {
	h := sha256.Sum256([]byte(start.UTC().Format(time.RFC3339Nano) + "\x00" + prober + "\x00" + segment))
	return start.UTC().Format("20060102T150405Z") + "-" + segment + "-" + hex.EncodeToString(h[:4])
}

// Dependencies are what the scheduled prober needs from the process.
type Dependencies struct {
	PolicyFile string
	// Store writes a finished run (probe_results and alerts).
	Store func(ctx context.Context, rep *Report) error
}

// Component runs probes on probe.schedule inside `flowaudit run`.
type Component struct {
	log     *slog.Logger
	cfg     Configuration
	deps    Dependencies
	metrics *metrics
	cron    *cron.Cron

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex // one run at a time
}

// New validates the configuration. A Component with no schedule does
// nothing when started.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Component, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Schedule != "" && deps.PolicyFile == "" {
		return nil, errors.New("probe.schedule: needs policy.file (probes are planned from the policy)")
	}
	c := &Component{log: r.Logger.With("component", "probe"), cfg: cfg, deps: deps, metrics: newMetrics(r.Registry)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Start starts the schedule.
func (c *Component) Start() error {
	if c.cfg.Schedule == "" {
		return nil
	}
	sched, err := cronParser.Parse(c.cfg.Schedule)
	if err != nil {
		return fmt.Errorf("probe.schedule: %w", err)
	}
	c.cron = cron.New(cron.WithParser(cronParser))
	c.cron.Schedule(sched, cron.FuncJob(c.scheduled))
	c.cron.Start()
	c.log.Info("scheduled probes", "schedule", c.cfg.Schedule, "from_segment", c.cfg.FromSegment)
	return nil
}

// Stop stops the schedule and cancels a run in progress (its attempts so
// far are still stored).
func (c *Component) Stop() error {
	c.cancel()
	if c.cron != nil {
		<-c.cron.Stop().Done()
	}
	c.wg.Wait()
	return nil
}

func (c *Component) scheduled() {
	if !c.mu.TryLock() {
		c.log.Warn("previous probe run still going; skipping this one")
		return
	}
	defer c.mu.Unlock()
	c.wg.Add(1)
	defer c.wg.Done()
	rep, err := c.RunOnce(c.ctx)
	if err != nil {
		c.metrics.failures.Inc()
		c.log.Error("probe run failed", "err", err)
		return
	}
	c.log.Info("probe run done", "run_id", rep.RunID, "pass", rep.Summary.Pass, "breach", rep.Summary.Breach,
		"blocked", rep.Summary.Blocked, "skipped", rep.Summary.Skipped)
}

// RunOnce loads the policy, probes from probe.from_segment (or this
// host's segment) and stores the run.
func (c *Component) RunOnce(ctx context.Context) (*Report, error) {
	p, err := policy.Load(c.deps.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("policy.file: %w", err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("policy.file: %w", err)
	}
	local, err := LocalAddrs()
	if err != nil {
		return nil, err
	}
	src, err := ResolveSource(m, c.cfg.FromSegment, local)
	if err != nil {
		return nil, err
	}
	rep, err := Run(ctx, c.cfg, m, src, RunOptions{Logger: c.log})
	if err != nil {
		return nil, err
	}
	c.metrics.observe(rep)
	if c.deps.Store != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.deps.Store(sctx, rep); err != nil {
			return rep, fmt.Errorf("store probe run %s: %w", rep.RunID, err)
		}
	}
	return rep, nil
}
