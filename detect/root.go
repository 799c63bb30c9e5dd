// Package detect is the detection stage: it runs the detectors of
// detect/engine over enriched flows and access events, produces alerts to
// flowaudit.alerts.v1 and delivers them to webhooks.
//
// Scale-out: enriched flows and access events are partitioned by source
// address, so per-source detectors are local to a partition's owner.
// Detectors that need a global view (bytes per segment pair, chains per
// identity, failures per user, first sightings of an edge) forward
// compact events through flowaudit.detect-keyed.v1, keyed so one owner
// sees all of a key. Alert IDs are deterministic, so two processes (or a
// replay) never make two different alerts of one finding.
//
// State: every checkpoint_interval the engine's state and the consumed
// offsets are written together to the compacted topic
// flowaudit.detect-state.v1 and only then committed, so a restarted
// process resumes both from the same point and neither re-learns from
// zero nor re-fires.
package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/detect/engine"
	"github.com/flowaudit/flowaudit/detect/webhook"
	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/schemas"
)

// Dependencies are what the stage needs from the process.
type Dependencies struct {
	Kafka      kafka.Configuration
	ClickHouse clickhousedb.Configuration
	// Policy is the compiled policy.file (segment tags set severities);
	// nil = none. Reloads arrive through ApplyPolicy.
	Policy   *policy.Matcher
	Webhooks webhook.Configuration
	// SchemaReady, when set, closes once ClickHouse's tables exist (the
	// sink of the same process has migrated): the new_edge baseline is
	// read after it, so a first start does not query a missing table.
	SchemaReady <-chan struct{}
}

// Component is the detect stage.
type Component struct {
	r       *reporter.Reporter
	log     *slog.Logger
	cfg     Configuration
	deps    Dependencies
	metrics *metrics
	ready   *reporter.Readiness
	sampler *reporter.Sampler

	engine     *engine.Engine
	dispatcher *webhook.Dispatcher
	commits    *commitTracker // webhook consumer offsets

	topics                                 []string
	enriched, access, keyed, alerts, state string
	stateKey                               string
	client, hooks                          *kgo.Client
	restored                               map[string]map[int32]int64
	generation                             uint64 // of the last checkpoint written or restored
	produceErr                             error
	errMu                                  sync.Mutex

	// nextMatcher is a reloaded policy waiting for the detection loop.
	nextMatcher atomic.Pointer[policy.Matcher]
	nextPolicy  atomic.Pointer[appliedPolicy] // the same reload with its file, for policy_drift
	drift       policyDriftState

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	fatal  chan error
}

// New validates the configuration and builds the detectors.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Component, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.Webhooks.Validate(); err != nil {
		return nil, err
	}
	c := &Component{
		r:        r,
		log:      r.Logger.With("component", "detect"),
		cfg:      cfg,
		deps:     deps,
		metrics:  newMetrics(r.Registry),
		ready:    r.Readiness("detect"),
		sampler:  reporter.NewSampler(10 * time.Second),
		enriched: deps.Kafka.Topic(kafka.TopicEnriched),
		access:   deps.Kafka.Topic(kafka.TopicAccess),
		keyed:    deps.Kafka.Topic(kafka.TopicDetectKeyed),
		alerts:   deps.Kafka.Topic(kafka.TopicAlerts),
		state:    deps.Kafka.Topic(kafka.TopicDetectState),
		stateKey: cfg.ConsumerGroup + "/" + cfg.InstanceID,
		fatal:    make(chan error, 1),
	}
	c.topics = []string{c.enriched, c.access, c.keyed}
	c.engine = engine.New(cfg.Configuration, deps.Policy, c.emit, c.forward)
	if deps.Policy != nil {
		c.drift.base = deps.Policy.Policy()
	}
	// A short drain: alerts not delivered by then are uncommitted and go
	// out after the restart; draining longer would only risk sending one
	// now and again then.
	d, err := webhook.New(r, deps.Webhooks, webhook.WithUndelivered(c.undelivered), webhook.WithDrainTimeout(time.Second))
	if err != nil {
		return nil, err
	}
	c.dispatcher = d
	c.commits = newCommitTracker()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Start creates the internal topics, restores the last checkpoint and
// starts consuming; the consuming goroutine first loads the new_edge
// baseline (after deps.SchemaReady).
func (c *Component) Start() error {
	c.ready.NotReady("restoring detector state")
	if err := c.ensureInternalTopics(); err != nil {
		return err
	}
	if err := c.restore(); err != nil {
		return err
	}
	client, err := kgo.NewClient(append(kafka.ClientOptions(c.deps.Kafka, "detect"),
		kgo.ConsumeTopics(c.topics...),
		kgo.ConsumerGroup(c.cfg.ConsumerGroup),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AdjustFetchOffsetsFn(c.adjustOffsets),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) {
			// Save state and offsets before partitions move away.
			c.checkpoint(ctx, cl)
		}),
	)...)
	if err != nil {
		return fmt.Errorf("unable to create detect consumer: %w", err)
	}
	c.client = client
	hooks, err := kgo.NewClient(append(kafka.ClientOptions(c.deps.Kafka, "webhooks"),
		kgo.ConsumeTopics(c.alerts),
		kgo.ConsumerGroup(c.cfg.WebhookConsumerGroup),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsRevoked(c.webhookPartitionsGone),
		kgo.OnPartitionsLost(c.webhookPartitionsGone),
	)...)
	if err != nil {
		client.Close()
		return fmt.Errorf("unable to create webhook consumer: %w", err)
	}
	c.hooks = hooks
	if err := c.dispatcher.Start(); err != nil {
		return err
	}
	c.wg.Add(2)
	go c.loop()
	go c.webhookLoop()
	return nil
}

// Done returns a channel that receives an error if the stage dies: its
// consumer closed under it or one of its loops panicked.
func (c *Component) Done() <-chan error { return c.fatal }

// Stop checkpoints, then closes.
func (c *Component) Stop() error {
	c.cancel()
	c.wg.Wait()
	var errs []error
	if c.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		c.checkpoint(ctx, c.client)
		cancel()
		c.client.AllowRebalance()
		c.client.Close()
	}
	// The dispatcher drains first, so what it still delivers is
	// committed; what it leaves (ErrStopped) is not, and the next owner
	// delivers it.
	if err := c.dispatcher.Stop(); err != nil {
		errs = append(errs, err)
	}
	if c.hooks != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.commitDone(ctx)
		cancel()
		c.hooks.AllowRebalance()
		c.hooks.Close()
	}
	return errors.Join(errs...)
}

func (c *Component) ensureInternalTopics() error {
	cl, err := kgo.NewClient(kafka.ClientOptions(c.deps.Kafka, "detect-admin")...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(c.ctx, 60*time.Second)
	defer cancel()
	rf := c.deps.Kafka.ReplicationFactor
	if c.deps.Kafka.Embedded() {
		rf = 1
	}
	compact := "compact"
	for topic, configs := range map[string]map[string]*string{
		c.keyed: nil,
		c.state: {"cleanup.policy": &compact},
	} {
		parts := c.deps.Kafka.Partitions
		if topic == c.state {
			parts = 1
		}
		resp, err := adm.CreateTopic(ctx, parts, rf, configs, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", topic, err)
		}
	}
	return nil
}

// schemaWait bounds how long Start waits for the sink's migration: past
// it detect runs without a baseline rather than not at all.
const schemaWait = 60 * time.Second

// waitSchema waits for deps.SchemaReady, if set.
func (c *Component) waitSchema() error {
	if c.deps.SchemaReady == nil {
		return nil
	}
	c.ready.NotReady("waiting for the sink to migrate ClickHouse")
	select {
	case <-c.deps.SchemaReady:
	case <-c.ctx.Done():
		return c.ctx.Err()
	case <-time.After(schemaWait):
		c.log.Warn("ClickHouse not migrated yet; starting without waiting longer", "waited", schemaWait)
	}
	return nil
}

// loadBaseline reads the observed edges ClickHouse has, so new_edge does
// not alert on what was seen before this process started.
func (c *Component) loadBaseline() {
	conn, err := clickhousedb.Open(c.deps.ClickHouse)
	if err != nil {
		c.log.Warn("no new_edge baseline: cannot open ClickHouse", "err", err)
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(c.ctx, 15*time.Second)
	defer cancel()
	edges, err := baselineEdges(ctx, conn, c.deps.ClickHouse.Database)
	if err != nil {
		c.log.Warn("no new_edge baseline from ClickHouse yet", "err", err)
		return
	}
	c.engine.LoadBaseline(edges)
	c.log.Info("new_edge baseline loaded from ClickHouse", "edges", len(edges))
}

// baselineEdges reads the segment edges ClickHouse has seen through the
// read side (query/).
func baselineEdges(ctx context.Context, conn driver.Conn, db string) ([]engine.Edge, error) {
	known, err := query.New(conn, db).KnownEdges(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]engine.Edge, len(known))
	for i, k := range known {
		out[i] = engine.Edge{SrcSegment: k.SrcSegment, DstSegment: k.DstSegment, DstPort: k.DstPort, Proto: k.Proto,
			LastSeen: uint64(k.LastSeen.UnixNano())}
	}
	return out, nil
}

// emit produces an alert, keyed by its ID.
func (c *Component) emit(a *schemas.Alert) {
	if !a.Update {
		c.metrics.alerts.WithLabelValues(a.Kind).Inc()
		c.log.Info("alert", "kind", a.Kind, "severity", a.Severity.String(), "id", a.ID, "summary", a.Summary)
	}
	// Not c.ctx: a stop must not fail what the checkpoint then flushes.
	c.client.Produce(context.Background(), &kgo.Record{Topic: c.alerts, Key: []byte(a.ID), Value: schemas.AppendAlert(nil, a)}, c.produced)
}

// forward routes a keyed detector event to the owner of its key.
func (c *Component) forward(k *engine.Keyed) {
	value, err := k.MarshalBinary()
	if err != nil {
		return
	}
	c.client.Produce(context.Background(), &kgo.Record{Topic: c.keyed, Key: []byte(k.Key), Value: value}, c.produced)
}

func (c *Component) produced(_ *kgo.Record, err error) {
	if err != nil {
		c.errMu.Lock()
		c.produceErr = err
		c.errMu.Unlock()
	}
}

// die reports a fatal error once: the process stops rather than run
// with a detection stage that no longer consumes.
func (c *Component) die(err error) {
	c.ready.NotReady(err.Error())
	select {
	case c.fatal <- err:
	default:
	}
}

// guard turns a panic of a stage goroutine into a fatal error naming it.
func (c *Component) guard(what string) {
	if r := recover(); r != nil {
		c.die(fmt.Errorf("detect: %s panicked: %v", what, r))
	}
}

func (c *Component) loop() {
	defer c.wg.Done()
	defer c.guard("detection loop")
	// The baseline is read before the first flow is judged, here rather
	// than in Start so that a slow ClickHouse delays no other stage.
	if c.cfg.Baseline {
		if c.waitSchema() != nil {
			return
		}
		c.loadBaseline()
	}
	c.ready.Ready()
	lastCheckpoint := time.Now()
	var (
		batch schemas.FlowBatch
		dec   schemas.FlowDecoder
	)
	var ev schemas.AccessEvent
	var keyed engine.Keyed
	for c.ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(c.ctx, time.Second)
		fetches := c.client.PollRecords(pctx, 10_000)
		cancel()
		if fetches.IsClientClosed() {
			if c.ctx.Err() == nil {
				c.die(errors.New("detect: the consumer closed while the stage was running"))
			}
			return
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			switch rec.Topic {
			case c.enriched:
				if err := dec.Unmarshal(rec.Value, &batch); err != nil {
					c.malformed(rec, err)
					return
				}
				for i := range batch.Flows {
					c.engine.ObserveFlow(&batch, &batch.Flows[i])
				}
				c.metrics.flows.Add(float64(len(batch.Flows)))
			case c.access:
				if err := schemas.UnmarshalAccessEvent(rec.Value, &ev); err != nil {
					c.malformed(rec, err)
					return
				}
				c.engine.ObserveAccess(&ev)
				c.metrics.accessEvents.Inc()
			case c.keyed:
				if err := keyed.UnmarshalBinary(rec.Value); err != nil {
					c.malformed(rec, err)
					return
				}
				c.engine.ObserveKeyed(&keyed)
				c.metrics.keyed.Inc()
			}
		})
		c.engine.Advance(c.watermark())
		c.applyReload()
		if time.Since(lastCheckpoint) >= c.cfg.CheckpointInterval && c.ctx.Err() == nil {
			c.checkpoint(c.ctx, c.client)
			lastCheckpoint = time.Now()
		}
		c.client.AllowRebalance()
	}
}

// watermark is the time windows are closed against: the latest event
// time seen, so replays and compressed scenarios close windows as their
// data says, or the wall clock when traffic is idle. Event times more
// than maxClockSkew ahead of the wall clock are not trusted: one exporter
// with a wrong clock must not make everyone else's flows late.
func (c *Component) watermark() uint64 {
	now := uint64(time.Now().UnixNano())
	wm := max(now, c.engine.LatestEvent())
	if limit := now + uint64(maxClockSkew); wm > limit {
		wm = limit
	}
	return wm
}

const maxClockSkew = time.Hour

func (c *Component) malformed(rec *kgo.Record, err error) {
	c.metrics.malformed.Inc()
	if ok, n := c.sampler.Allow("malformed/" + rec.Topic); ok {
		c.log.Warn("skipping undecodable record", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err, "suppressed", n)
	}
}
