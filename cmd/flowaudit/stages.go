package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
	"github.com/flowaudit/flowaudit/console"
	"github.com/flowaudit/flowaudit/detect"
	"github.com/flowaudit/flowaudit/enrich"
	"github.com/flowaudit/flowaudit/ingest/access"
	"github.com/flowaudit/flowaudit/ingest/flow"
	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/probe"
	"github.com/flowaudit/flowaudit/sink"
)

// stages says which components one process runs.
type stages struct {
	broker, collect, enrich, detect, sink bool
	probe                                 bool // scheduled probes (probe.schedule), in run only
	console                               bool // the web console (console.listen), in run only
	report                                bool // scheduled compliance reports (report.schedule), in run only
	archive                               bool // the Parquet archive (archive.dir), in run and archive
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "[--config FILE] [--check]", `
Run every stage in one process: the embedded Kafka-protocol broker (when
kafka.brokers is empty), the flow and access-log collectors, the enrich
stage (segments, identities, verdicts from policy.file), the detect stage
(alerts, webhooks), the ClickHouse sink and the web console (console.listen).
Stops cleanly on SIGINT or SIGTERM, flushing what it holds.`, stderr)
	var sf stageFlags
	sf.register(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return runStages(sf, stages{broker: true, collect: true, enrich: true, detect: true, sink: true, probe: true, console: true, report: true, archive: true}, stdout, stderr)
}

func cmdCollect(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("collect", "[--config FILE] [--check]", `
Run the collectors: NetFlow v5/v9, IPFIX and sFlow on ingest.flows.listen
into the flows topic, and access logs (syslog on ingest.access.syslog_listen,
HTTP POST /v1/access on ingest.access.http_listen, tailed files in
ingest.access.files) into the access topic. Run more collect processes
behind a load balancer to scale out. Needs a broker: kafka.brokers, or a
"flowaudit broker" on kafka.embedded_listen.`, stderr)
	var sf stageFlags
	sf.register(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return runStages(sf, stages{collect: true}, stdout, stderr)
}

func cmdEnrich(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("enrich", "[--config FILE] [--check]", `
Run the enrich stage: consume the flows topic in consumer group
enrich.consumer_group, label every flow with its segment, workload,
identity and policy verdict (policy.file), and produce the enriched topic.
Every enrich process reads all access events to bind addresses to users;
at start it replays the last enrich.identity_ttl of them. A changed policy
file (or SIGHUP) is applied without stopping; an invalid one is refused
and the old policy kept.`, stderr)
	var sf stageFlags
	sf.register(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return runStages(sf, stages{enrich: true}, stdout, stderr)
}

func cmdDetect(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("detect", "[--config FILE] [--check]", `
Run the detection stage: policy violations, new edges, address and port
scans, volume spikes, brute force, unattributed access and lateral chains
over enriched flows and access events (settings under detect.*), alerts
to the alerts topic (and so ClickHouse) and to alerts.webhooks. Run more
detect processes with the same detect.consumer_group to scale out: they
raise the same alerts as one; give each a stable detect.instance_id so a
restart resumes its checkpoint.`, stderr)
	var sf stageFlags
	sf.register(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return runStages(sf, stages{detect: true}, stdout, stderr)
}

func cmdSink(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("sink", "[--config FILE] [--check]", `
Run the ClickHouse sink: consume the flows topic in consumer group
sink.consumer_group and insert into ClickHouse, committing offsets only
after ClickHouse accepted the rows. Run more sink processes with the same
group to scale out (up to kafka.partitions).`, stderr)
	var sf stageFlags
	sf.register(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return runStages(sf, stages{sink: true}, stdout, stderr)
}

func cmdBroker(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("broker", "[--config FILE] [--check]", `
Run the embedded Kafka-protocol broker (franz-go's kfake) alone on
kafka.embedded_listen, persisted under data_dir/kafka, and create the
flowaudit topics. For separate collect and sink processes on one machine
without a Kafka cluster.`, stderr)
	var sf stageFlags
	sf.register(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return runStages(sf, stages{broker: true}, stdout, stderr)
}

func runStages(sf stageFlags, st stages, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig(sf.config, stderr)
	if !ok {
		return 1
	}
	if st.broker && !cfg.Kafka.Embedded() {
		if !st.collect && !st.sink {
			fmt.Fprintln(stderr, "flowaudit broker: kafka.brokers is set, so there is no embedded broker to run; empty it to use the embedded broker")
			return 1
		}
		st.broker = false
	}
	logger := newLogger(cfg.Log, stderr)
	r := reporter.New(logger)

	var (
		broker    *kafka.Broker
		collector *flow.Component
		accessCol *access.Component
		enricher  *enrich.Component
		detector  *detect.Component
		sinkComp  *sink.Component
		prober    *probe.Component
		err       error
	)
	if st.broker {
		if broker, err = kafka.NewBroker(logger, cfg.Kafka, cfg.DataDir); err != nil {
			fmt.Fprintf(stderr, "flowaudit: unable to initialize broker: %v\n", err)
			return 1
		}
		broker.ReportTo(r)
	}
	if st.collect {
		if collector, err = flow.New(r, cfg.Ingest.Flows, flow.Dependencies{Kafka: cfg.Kafka, DataDir: cfg.DataDir}); err != nil {
			fmt.Fprintf(stderr, "flowaudit: unable to initialize collector: %v\n", err)
			return 1
		}
		if accessCol, err = access.New(r, cfg.Ingest.Access, access.Dependencies{Kafka: cfg.Kafka, DataDir: cfg.DataDir}); err != nil {
			fmt.Fprintf(stderr, "flowaudit: unable to initialize access-log collector: %v\n", err)
			return 1
		}
	}
	// One reader of policy.file for every stage that judges by it, so
	// enrich and detect apply the same version.
	var policies *policyLoader
	if st.enrich || st.detect {
		if policies, err = newPolicyLoader(cfg.Policy.File, cfg.Enrich.PolicyReloadInterval, logger); err != nil {
			fmt.Fprintf(stderr, "flowaudit: unable to load the policy: %v\n", err)
			return 1
		}
	}
	archiver, err := newArchive(st, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit: unable to initialize archive: %v\n", err)
		return 1
	}
	if st.sink {
		if sinkComp, err = sink.New(r, cfg.Sink, sink.Dependencies{Kafka: cfg.Kafka, ClickHouse: cfg.ClickHouse}); err != nil {
			fmt.Fprintf(stderr, "flowaudit: unable to initialize sink: %v\n", err)
			return 1
		}
	}
	if st.enrich {
		m, content := policies.current()
		if enricher, err = enrich.New(r, cfg.Enrich, enrich.Dependencies{Kafka: cfg.Kafka,
			Policy: m, PolicyContent: content, PolicyFile: cfg.Policy.File}); err != nil {
			fmt.Fprintf(stderr, "flowaudit: unable to initialize enrich stage: %v\n", err)
			return 1
		}
		policies.use(enricher)
	}
	if st.detect {
		m, _ := policies.current()
		deps := detect.Dependencies{Kafka: cfg.Kafka, ClickHouse: cfg.ClickHouse, Policy: m, Webhooks: cfg.Alerts}
		if sinkComp != nil {
			// The baseline reads observed_edges: after the migration.
			deps.SchemaReady = sinkComp.Migrated()
		}
		if detector, err = detect.New(r, cfg.Detect, deps); err != nil {
			fmt.Fprintf(stderr, "flowaudit: unable to initialize detect stage: %v\n", err)
			return 1
		}
		policies.use(detector)
	}
	if st.probe && cfg.Probe.Schedule != "" {
		if prober, err = probe.New(r, cfg.Probe, probe.Dependencies{PolicyFile: cfg.Policy.File,
			Store: func(ctx context.Context, rep *probe.Report) error { return storeScheduledProbeRun(ctx, cfg, rep) }}); err != nil {
			fmt.Fprintf(stderr, "flowaudit: unable to initialize prober: %v\n", err)
			return 1
		}
	}
	reports, closeReports, err := newReportSchedule(st.report, cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit: unable to initialize report schedule: %v\n", err)
		return 1
	}
	defer closeReports()
	digests, closeDigests, err := newDigestSchedule(st.report, cfg, logger) // scheduled like reports: in run only
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit: unable to initialize digest schedule: %v\n", err)
		return 1
	}
	defer closeDigests()
	var consoleSrv *console.Server
	if st.console && cfg.Console.Listen != "" {
		srv, closeConn, err := newConsole(cfg, logger)
		if err != nil {
			fmt.Fprintf(stderr, "flowaudit: unable to initialize console: %v\n", err)
			return 1
		}
		defer closeConn()
		consoleSrv = srv
	}
	if sf.check {
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		fmt.Fprintf(stderr, "flowaudit: data_dir: %v\n", err)
		return 1
	}

	lc := &lifecycle{log: logger, deadline: shutdownDeadline(cfg)}
	if broker != nil {
		lc.cause = broker.Fault
	}
	fail := func(err error) int {
		logger.Error(err.Error())
		_ = lc.stop()
		return 1
	}
	metricsSrv := reporter.NewServer(r, cfg.Metrics)
	if err := lc.start("metrics server", metricsSrv.Start, metricsSrv.Stop); err != nil {
		return fail(err)
	}
	if broker != nil {
		if err := lc.start("broker", broker.Start, broker.Stop); err != nil {
			return fail(err)
		}
	}
	if err := kafka.EnsureTopics(context.Background(), cfg.Kafka, logger, 60*time.Second, topicsFor(cfg.Kafka)...); err != nil {
		return fail(err)
	}
	if archiver != nil {
		if err := lc.start("archive", archiver.Start, archiver.Stop); err != nil {
			return fail(err)
		}
		lc.watch(archiver.Done())
	}
	if sinkComp != nil {
		if err := lc.start("sink", sinkComp.Start, sinkComp.Stop); err != nil {
			return fail(err)
		}
		lc.watch(sinkComp.Done())
	}
	if detector != nil {
		if err := lc.start("detect", detector.Start, detector.Stop); err != nil {
			return fail(err)
		}
		lc.watch(detector.Done())
	}
	if enricher != nil {
		if err := lc.start("enrich", enricher.Start, enricher.Stop); err != nil {
			return fail(err)
		}
		lc.watch(enricher.Done())
	}
	if collector != nil {
		if err := lc.start("collector", collector.Start, collector.Stop); err != nil {
			return fail(err)
		}
		lc.watch(collector.Done())
		if err := lc.start("access-log collector", accessCol.Start, accessCol.Stop); err != nil {
			return fail(err)
		}
		lc.watch(accessCol.Done())
	}
	if policies != nil {
		if err := lc.start("policy loader", policies.Start, policies.Stop); err != nil {
			return fail(err)
		}
	}
	if prober != nil {
		if err := lc.start("prober", prober.Start, prober.Stop); err != nil {
			return fail(err)
		}
	}
	if reports != nil {
		if err := lc.start("report schedule", reports.Start, reports.Stop); err != nil {
			return fail(err)
		}
	}
	if digests != nil {
		if err := lc.start("digest schedule", digests.Start, digests.Stop); err != nil {
			return fail(err)
		}
	}
	if consoleSrv != nil {
		// The console is read-only and beside the pipeline: a console that
		// cannot listen (the port is taken) must not stop the pipeline.
		if err := lc.start("console", consoleSrv.Start, consoleSrv.Stop); err != nil {
			logger.Error("the console is not served; set console.listen to a free address, or \"\" to disable it", "err", err)
		}
	}
	logger.Info("flowaudit running", "version", version(), "collect", st.collect, "enrich", st.enrich, "detect", st.detect, "sink", st.sink, "embedded_broker", broker != nil)
	ctx, cancel := context.WithCancel(context.Background())
	go statusLoop(ctx, r, 10*time.Second, st.collect, st.sink)
	werr := lc.wait()
	cancel()
	serr := lc.stop()
	if werr != nil || serr != nil {
		return 1
	}
	logger.Info("stopped cleanly")
	return 0
}

// shutdownDeadline is how long a stop may take before the process exits
// anyway: shutdown_timeout, one number for the whole process, however
// many components stop within it.
func shutdownDeadline(cfg config.Configuration) time.Duration {
	return cfg.ShutdownTimeout
}

func topicsFor(k kafka.Configuration) []string {
	return []string{
		k.Topic(kafka.TopicFlows), k.Topic(kafka.TopicAccess), k.Topic(kafka.TopicEnriched),
		k.Topic(kafka.TopicAlerts), k.Topic(kafka.TopicDeadLetter), k.Topic(kafka.TopicDetectKeyed),
		k.Topic(kafka.TopicPolicy),
	}
}

func cmdMigrate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("migrate", "[--config FILE] [--check] [--print [--server-version X.Y]]", `
Create the ClickHouse database clickhouse.database and every flowaudit
table, or add columns missing from existing ones. Reads version() first:
ClickHouse >= 23.8 gets IPv6, LowCardinality, codecs and a TTL; older
servers get the compatible fallbacks. Safe to run repeatedly.

--print prints the DDL for --server-version (default 23.8) instead,
without connecting: one statement per paragraph, each ending in ";".`, stderr)
	var sf stageFlags
	sf.register(fs)
	var mf migratePrintFlags
	mf.register(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	cfg, ok := loadConfig(sf.config, stderr)
	if !ok {
		return 1
	}
	if mf.print || mf.serverVersion != "" {
		return printMigration(cfg, mf, stdout, stderr)
	}
	if sf.check {
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}
	logger := newLogger(cfg.Log, stderr)
	conn, err := clickhousedb.Open(cfg.ClickHouse)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit migrate: %v\n", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := clickhousedb.WaitReady(ctx, conn, func(err error) {
		logger.Warn("waiting for ClickHouse", "addr", cfg.ClickHouse.Addr, "err", err)
	}); err != nil {
		fmt.Fprintf(stderr, "flowaudit migrate: clickhouse.addr %s: %v\n", cfg.ClickHouse.Addr, err)
		return 1
	}
	v, err := sink.MigrateConfigured(ctx, conn, cfg.ClickHouse, logger)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit migrate: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "database %s is up to date on ClickHouse %s\n", cfg.ClickHouse.Database, v.String())
	return 0
}
