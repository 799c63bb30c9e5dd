package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/policy/enforce"
	"github.com/flowaudit/flowaudit/query"
)

const auditUsage = `Usage: flowaudit audit SUBCOMMAND [flags]

Segmentation audit over the flows stored in ClickHouse, against the policy
of --config (policy.file).

Subcommands:
  recommend   least-privilege allow rules covering every observed service edge
  simulate    what a draft policy would have changed over the stored history
  gaps        findings: unused, shadowed, redundant, broad rules; segment, exposure and review gaps
  diff        connections one policy file allows and another does not
  identities  per user and service account: what it reached, under which rule
  drift       policy versions applied, what each opened or closed, new edges, violation trend
  digest      one screen: what is new, what is hot, what went quiet

--from-archive DIR reads the Parquet archive (archive.dir) instead of
ClickHouse, for windows older than ClickHouse's retention.

Every subcommand takes --help. Exit codes: 0 done, 1 findings at or above
--fail-on, 2 usage or runtime error.`

func cmdAudit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprintln(stderr, auditUsage) // as flag's own help: on stderr
		return 0
	case "recommend":
		return cmdAuditRecommend(args[1:], stdout, stderr)
	case "simulate":
		return cmdAuditSimulate(args[1:], stdout, stderr)
	case "gaps":
		return cmdAuditGaps(args[1:], stdout, stderr)
	case "diff":
		return cmdAuditDiff(args[1:], stdout, stderr)
	case "identities":
		return cmdAuditIdentities(args[1:], stdout, stderr)
	case "drift":
		return cmdAuditDrift(args[1:], stdout, stderr)
	case "digest":
		return cmdAuditDigest(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "flowaudit audit: unknown subcommand %q\n\n%s\n", args[0], auditUsage)
	return 2
}

// auditFlags are the flags every audit subcommand shares.
type auditFlags struct {
	config, since, until, format, failOn string
	fromArchive                          string
}

func (a *auditFlags) register(fs *flag.FlagSet, since, formats, failOn string) {
	fs.StringVar(&a.config, "config", "", "YAML configuration `file` (ClickHouse and policy.file)")
	fs.StringVar(&a.since, "since", since, "history to read: a `duration` such as 7d, 36h or 90m before --until")
	fs.StringVar(&a.until, "until", "", "end of the history, RFC 3339 `time` (default now); fix it for byte-identical re-runs")
	fs.StringVar(&a.format, "format", "table", "output `format`: "+formats)
	fs.StringVar(&a.failOn, "fail-on", "none", "exit 1 when there are findings of this `kind`: "+failOn)
	fs.StringVar(&a.fromArchive, "from-archive", "", fromArchiveUsage)
}

func (a *auditFlags) window(now time.Time) (query.Window, error) {
	d, err := parseSince(a.since)
	if err != nil {
		return query.Window{}, fmt.Errorf("--since: %w", err)
	}
	end := now
	if a.until != "" {
		if end, err = time.Parse(time.RFC3339, a.until); err != nil {
			return query.Window{}, fmt.Errorf("--until: %q is not an RFC 3339 time such as 2026-12-01T12:00:00Z", a.until)
		}
	}
	return query.Since(d, end), nil
}

// parseSince parses a duration with the day suffix d (and w for weeks)
// beside Go's units: "7d", "1w", "36h", "1d12h".
func parseSince(s string) (time.Duration, error) {
	var total time.Duration
	rest := s
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		if i := strings.Index(rest, u.suffix); i > 0 {
			n, err := strconv.Atoi(rest[:i])
			if err != nil {
				return 0, fmt.Errorf("%q is not a duration such as 7d, 36h or 90m", s)
			}
			total += time.Duration(n) * u.unit
			rest = rest[i+1:]
		}
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration such as 7d, 36h or 90m", s)
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	return total, nil
}

// parseInterspersed parses flags placed before, between or after the
// positional arguments, which it returns. "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, true
			}
			return nil, 2, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, false
		}
		// fs.Parse stops at the first positional, or after "--".
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), 0, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// auditEnv is what an audit subcommand reads from: the configured policy
// and a query.Reader on the configured database.
type auditEnv struct {
	cfg    config.Configuration
	policy *policy.Matcher
	reader *query.Reader
	close  func()
}

func openAudit(name string, af auditFlags, needPolicy bool, stderr io.Writer) (*auditEnv, bool) {
	cfg, ok := loadConfig(af.config, stderr)
	if !ok {
		return nil, false
	}
	env := &auditEnv{cfg: cfg}
	if needPolicy {
		if cfg.Policy.File == "" {
			fmt.Fprintf(stderr, "flowaudit %s: the configuration has no policy.file; set it to the policy whose segments label the traffic\n", name)
			return nil, false
		}
		p, err := policy.Load(cfg.Policy.File)
		if err == nil {
			env.policy, err = policy.Compile(p)
		}
		if err != nil {
			fmt.Fprintf(stderr, "flowaudit %s: policy.file: %v\n", name, err)
			return nil, false
		}
	}
	if af.fromArchive != "" {
		ctx, cancel := signalContext()
		defer cancel()
		r, closeArchive, err := openArchiveReader(ctx, cfg, af.fromArchive, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "flowaudit %s: %v\n", name, err)
			return nil, false
		}
		env.reader, env.close = r, closeArchive
		return env, true
	}
	conn, err := clickhousedb.Open(cfg.ClickHouse)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit %s: clickhouse: %v\n", name, err)
		return nil, false
	}
	env.reader = query.New(conn, cfg.ClickHouse.Database)
	env.close = func() { _ = conn.Close() }
	return env, true
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func cmdAuditRecommend(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit recommend", "[--since 7d] [--granularity segment|workload] [--format table|json|policy|nftables|networkpolicy|cilium]", `
Recommend the least-privilege allow rules that cover every service edge
observed in the window and crossing a segment boundary of the configured
policy (with --granularity workload: also every edge between inventory
workloads, inside segments too). Replies are folded into the connection
they answer and never make rules of their own. Rules are aggregated per
segment pair with their set of service ports; a rule is scoped to an
identity when at least --identity-share of its flows carry it; many
distinct ports become a range flagged "generalized". Each rule carries its
evidence (flows, bytes, first and last seen, top sources, identities) and a
status: "learning" while the history is shorter than --min-history or a
port is younger than --stable-for, else "stable".

Traffic behind an alert of the window (scans, brute force, lateral chains,
volume spikes, unattributed access, new edges) is never silently allowed:
it is listed as held, with the alert ids.

--format policy writes a complete policy file (the configured segments and
inventory, the recommended rules) that "flowaudit policy validate" accepts
and "flowaudit audit simulate" can replay; --format nftables, networkpolicy
and cilium render that policy with the exporters of "flowaudit policy
export".`, stderr)
	var af auditFlags
	af.register(fs, "7d", "table, json, policy, nftables, networkpolicy or cilium", "held or none")
	gran := fs.String("granularity", audit.GranularitySegment, "rule `ends`: segment, or workload (inventory workloads where known)")
	share := fs.Float64("identity-share", 0.95, "`share` of an edge's flows one identity must carry to scope the rule to it")
	generalize := fs.Int("generalize-ports", 16, "distinct ports of one protocol on an edge from which the rule names their range (`n`; 0 never)")
	minHistory := fs.String("min-history", "7d", "history `duration` below which every rule is learning")
	stableFor := fs.String("stable-for", "3d", "`duration` every port of a rule must have been seen for the rule to be stable")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "flowaudit audit recommend: unexpected argument %q\n", pos[0])
		return 2
	}
	w, err := af.window(time.Now())
	opt := audit.DefaultRecommendOptions(w)
	if err == nil {
		opt.MinHistory, err = parseSince(*minHistory)
		if err != nil {
			err = fmt.Errorf("--min-history: %w", err)
		}
	}
	if err == nil {
		if opt.StableFor, err = parseSince(*stableFor); err != nil {
			err = fmt.Errorf("--stable-for: %w", err)
		}
	}
	switch {
	case err != nil:
	case *gran != audit.GranularitySegment && *gran != audit.GranularityWorkload:
		err = fmt.Errorf("--granularity: %q is not segment or workload", *gran)
	case *share <= 0 || *share > 1:
		err = fmt.Errorf("--identity-share: %v is not in (0, 1]", *share)
	case *generalize < 0:
		err = fmt.Errorf("--generalize-ports: %d is negative", *generalize)
	case af.failOn != "none" && af.failOn != "held":
		err = fmt.Errorf("--fail-on: %q is not held or none", af.failOn)
	}
	switch af.format {
	case "table", "json", "policy":
	case "nftables", "networkpolicy", "cilium":
		if *gran != audit.GranularitySegment && err == nil {
			err = fmt.Errorf("--format %s needs --granularity segment", af.format)
		}
	default:
		if err == nil {
			err = fmt.Errorf("--format: %q is not table, json, policy, nftables, networkpolicy or cilium", af.format)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit recommend: %v\n", err)
		return 2
	}
	opt.Granularity, opt.IdentityShare, opt.GeneralizePorts = *gran, *share, *generalize

	env, ok := openAudit("audit recommend", af, true, stderr)
	if !ok {
		return 2
	}
	defer env.close()
	ctx, cancel := signalContext()
	defer cancel()
	edges, err := env.reader.ServiceEdges(ctx, w)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit recommend: %v\n", err)
		return 2
	}
	alerts, err := env.reader.Alerts(ctx, w, audit.DefaultHoldKinds)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit recommend: %v\n", err)
		return 2
	}
	rec := audit.Recommend(edges, alerts, env.policy, opt)
	switch af.format {
	case "json":
		err = audit.WriteJSON(stdout, rec)
	case "policy":
		err = audit.WritePolicy(stdout, env.policy.Policy(), rec)
	case "nftables", "networkpolicy", "cilium":
		// The policy exporters render the recommended policy: one exporter
		// per target, shared with "flowaudit policy export".
		recommended := audit.RecommendedPolicy(env.policy.Policy(), rec)
		var text string
		var notes []string
		switch af.format {
		case "nftables":
			text, notes = enforce.Nftables(recommended, "recommended by flowaudit audit recommend")
		case "networkpolicy":
			text, notes, err = enforce.NetworkPolicyYAML(recommended)
		default:
			text, notes, err = enforce.CiliumYAML(recommended)
		}
		for _, n := range notes {
			fmt.Fprintf(stderr, "note: %s\n", n)
		}
		if err == nil {
			_, err = io.WriteString(stdout, text)
		}
	default:
		err = audit.WriteRecommendationTable(stdout, rec)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit recommend: %v\n", err)
		return 2
	}
	if af.failOn == "held" && len(rec.Held) > 0 {
		return 1
	}
	return 0
}

func cmdAuditSimulate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("audit simulate", "DRAFT.yaml [--since 7d] [--format table|json]", `
Replay the stored flows of the window against a draft policy: addresses are
relabelled with the draft's segments and inventory and decided by the same
policy code the enricher runs, then compared with the verdict the enricher
stored. Flows are counted as newly blocked, newly allowed, unchanged or
uncertain (the draft's decision hangs on an identity the flow lacks, or the
flow was never decided), and every change is listed per segment pair
(client to server), service port and client identity, with flow counts and
example addresses.`, stderr)
	var af auditFlags
	af.register(fs, "7d", "table or json", "newly_blocked, changes (any change or uncertain) or none")
	all := fs.Bool("all", false, "list unchanged traffic too")
	pos, code, done := parseInterspersed(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "flowaudit audit simulate: give exactly one DRAFT policy file")
		fs.Usage()
		return 2
	}
	w, err := af.window(time.Now())
	switch {
	case err != nil:
	case af.format != "table" && af.format != "json":
		err = fmt.Errorf("--format: %q is not table or json", af.format)
	case af.failOn != "none" && af.failOn != audit.NewlyBlocked && af.failOn != "changes":
		err = fmt.Errorf("--fail-on: %q is not newly_blocked, changes or none", af.failOn)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit simulate: %v\n", err)
		return 2
	}
	p, err := policy.Load(pos[0])
	var draft *policy.Matcher
	if err == nil {
		draft, err = policy.Compile(p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit simulate: draft: %v\n", err)
		return 2
	}
	env, ok := openAudit("audit simulate", af, false, stderr)
	if !ok {
		return 2
	}
	defer env.close()
	ctx, cancel := signalContext()
	defer cancel()
	groups, err := env.reader.ReplayGroups(ctx, w, audit.PortBounds(p))
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit simulate: %v\n", err)
		return 2
	}
	sim, err := audit.Simulate(groups, draft, audit.SimulateOptions{Window: w, All: *all})
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit simulate: %v\n", err)
		return 2
	}
	if af.format == "json" {
		err = audit.WriteJSON(stdout, sim)
	} else {
		err = audit.WriteSimulationTable(stdout, sim)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit audit simulate: %v\n", err)
		return 2
	}
	s := sim.Summary
	switch {
	case af.failOn == audit.NewlyBlocked && s.NewlyBlocked > 0,
		af.failOn == "changes" && s.NewlyBlocked+s.NewlyAllowed+s.Uncertain > 0:
		return 1
	}
	return 0
}
