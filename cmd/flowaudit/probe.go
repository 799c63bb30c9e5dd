package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/probe"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/schemas"
	"github.com/flowaudit/flowaudit/sink"
)

const probeDescription = `
Active segmentation test, run from a host inside one segment (the prober).
From policy.file it plans, for every other declared segment, up to
probe.targets_per_segment addresses (inventory workloads first, then the
first hosts of the segment's CIDRs), each probed on every port a rule
names, the ports attackers try first (22, 3389, 445, 5432, 3306, 6379,
9200, 27017, ...), probe.denied_sample random denied ports and ICMP echo
(when the process may open an ICMP socket). The expectation of each
attempt (allow or deny) comes from the policy; the observation from a
real TCP connect (open, closed = refused by the host, filtered = no answer
within probe.timeout or refused on the path), a UDP request to services
that answer (DNS, NTP) or an echo request.

  pass     what happened is what the policy says
  breach   the policy denies it and the target answered: a
           segmentation_breach alert (critical on segments tagged
           sensitive or pci-cde)
  blocked  the policy allows it and the path dropped it

Attempts are paced at probe.rate per second and the run is bounded by
probe.max_attempts and probe.max_duration. Only addresses of declared
segments are ever probed, never the prober's own segment.

Results go to the probe_results table and breaches to the alerts table
(the tables are created if missing); --store=false only prints, so a
prober needs no database access.

Probes are traffic too: once the exporters have reported them,
"flowaudit probe coverage" tells how many of a run's attempts the flows
table shows, per segment pair.

Exit status: 0 every check passed or was blocked, 1 at least one breach,
2 usage or runtime error (including results that could not be stored).`

const probeCoverageDescription = `
Collection coverage of a stored probe run: per (source segment,
destination segment), its TCP and UDP attempts and how many of them the
flows table shows (a flow from the prober's address to the same address,
port and protocol, from a minute before the run to --slack after it).
Below 100% means the exporters do not see part of that path. ICMP
attempts are left out (exporters key echo flows differently).

Exit status: 0 done, 2 usage or runtime error.`

func cmdProbeCoverage(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("probe coverage", "[--run ID] [--slack 5m] [--format table|json] --config FILE", probeCoverageDescription, stderr)
	configPath := fs.String("config", "", "YAML configuration `file` (clickhouse.*)")
	run := fs.String("run", "", "probe run `id` (default: the latest in probe_results)")
	slack := fs.Duration("slack", 5*time.Minute, "how long after the run flows may still be reported (exporter timeouts)")
	format := fs.String("format", "table", "output `format`: table or json")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *format != "table" && *format != "json" {
		fmt.Fprintf(stderr, "flowaudit probe coverage: --format %q: use table or json\n", *format)
		return 2
	}
	cfg, ok := loadConfig(*configPath, stderr)
	if !ok {
		return 2
	}
	conn, err := clickhousedb.Open(cfg.ClickHouse)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit probe coverage: %v\n", err)
		return 2
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := query.New(conn, cfg.ClickHouse.Database)
	if *run == "" {
		if *run, err = r.LatestProbeRun(ctx); err != nil {
			fmt.Fprintf(stderr, "flowaudit probe coverage: %v\n", err)
			return 2
		}
	}
	pairs, err := r.ProbeCoverage(ctx, *run, *slack)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit probe coverage: %v\n", err)
		return 2
	}
	type pair struct {
		SrcSegment string  `json:"src_segment"`
		DstSegment string  `json:"dst_segment"`
		Sent       uint64  `json:"sent"`
		Seen       uint64  `json:"seen"`
		Coverage   float64 `json:"coverage"`
	}
	out := struct {
		RunID string `json:"run_id"`
		Pairs []pair `json:"pairs"`
	}{RunID: *run, Pairs: []pair{}}
	for _, p := range pairs {
		c := 0.0
		if p.Sent > 0 {
			c = float64(p.Seen) / float64(p.Sent)
		}
		out.Pairs = append(out.Pairs, pair{p.SrcSegment, p.DstSegment, p.Sent, p.Seen, c})
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return 2
		}
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tDESTINATION\tSENT\tSEEN\tCOVERAGE")
	for _, p := range out.Pairs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f%%\n", p.SrcSegment, p.DstSegment, p.Sent, p.Seen, 100*p.Coverage)
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "\nrun %s\n", *run)
	return 0
}

func cmdProbe(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "coverage" {
		return cmdProbeCoverage(args[1:], stdout, stderr)
	}
	fs := newFlagSet("probe", "[--from-segment NAME] [--format table|json] [--store=false] --config FILE", probeDescription, stderr)
	configPath := fs.String("config", "", "YAML configuration `file` (policy.file, probe.*, clickhouse.*)")
	from := fs.String("from-segment", "", "segment this host probes from (default: the segment of its addresses; \"external\" for none)")
	format := fs.String("format", "table", "output `format`: table or json")
	store := fs.Bool("store", true, "write results to probe_results and breaches to alerts in ClickHouse")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *format != "table" && *format != "json" {
		fmt.Fprintf(stderr, "flowaudit probe: --format %q: use table or json\n", *format)
		return 2
	}
	cfg, ok := loadConfig(*configPath, stderr)
	if !ok {
		return 2
	}
	if cfg.Policy.File == "" {
		fmt.Fprintln(stderr, "flowaudit probe: policy.file is not set: the probe plans from the policy (set it in the --config file)")
		return 2
	}
	p, err := policy.Load(cfg.Policy.File)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit probe: policy.file: %v\n", err)
		return 2
	}
	m, err := policy.Compile(p)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit probe: policy.file: %v\n", err)
		return 2
	}
	local, err := probe.LocalAddrs()
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit probe: %v\n", err)
		return 2
	}
	src, err := probe.ResolveSource(m, *from, local)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit probe: %v\n", err)
		return 2
	}
	logger := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := probe.Run(ctx, cfg.Probe, m, src, probe.RunOptions{Logger: logger})
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit probe: %v\n", err)
		return 2
	}
	if *format == "json" {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit probe: %v\n", err)
		return 2
	}
	code := 0
	if *store {
		if err := storeProbeRun(cfg, rep, logger.Warn); err != nil {
			fmt.Fprintf(stderr, "flowaudit probe: results not stored: %v (use --store=false on a prober without database access)\n", err)
			code = 2
		}
	}
	if rep.Summary.Breach > 0 {
		code = 1
	}
	return code
}

// storeScheduledProbeRun stores a run of `run`'s scheduled prober: rows
// and alerts into ClickHouse, and the alerts to the alerts topic too, so
// alerts.webhooks deliver them (the sink's copy has the same id and
// version, so the alerts table keeps one).
func storeScheduledProbeRun(ctx context.Context, cfg config.Configuration, rep *probe.Report) error {
	if alerts := probe.Alerts(rep); len(alerts) > 0 {
		cl, err := kgo.NewClient(kafka.ClientOptions(cfg.Kafka, "probe")...)
		if err != nil {
			return err
		}
		defer cl.Close()
		var recs []*kgo.Record
		for i := range alerts {
			recs = append(recs, &kgo.Record{Topic: cfg.Kafka.Topic(kafka.TopicAlerts), Key: []byte(alerts[i].ID),
				Value: schemas.AppendAlert(nil, &alerts[i])})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("produce alerts: %w", err)
		}
	}
	return storeProbeRun(cfg, rep, func(string, ...any) {})
}

// storeProbeRun migrates the database (so probe_results exists) and writes
// the run.
func storeProbeRun(cfg config.Configuration, rep *probe.Report, warn func(string, ...any)) error {
	conn, err := clickhousedb.Open(cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := clickhousedb.WaitReady(ctx, conn, func(err error) {
		warn("waiting for ClickHouse", "addr", cfg.ClickHouse.Addr, "err", err)
	}); err != nil {
		return fmt.Errorf("clickhouse.addr %s: %w", cfg.ClickHouse.Addr, err)
	}
	v, err := sink.Migrate(ctx, conn, cfg.ClickHouse.Database, cfg.ClickHouse.Retention, nil)
	if err != nil {
		return err
	}
	return probe.Store(ctx, conn, cfg.ClickHouse.Database, v.Modern(), rep)
}
