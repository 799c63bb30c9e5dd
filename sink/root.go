// Package sink moves flow batches from the Kafka flow topic into
// ClickHouse. It batches by size and time, inserts over the native
// protocol, and commits Kafka offsets only after ClickHouse accepted the
// rows; on errors it retries with backoff and never skips data.
//
// Flows go in exactly once, also after a crash of the sink or of enrich:
// see flows.go. For every topic, each successful insert is also followed
// by a row in flowaudit.kafka_offsets holding the next offset of each
// partition in the batch; a restarted sink resumes from whichever of that
// and Kafka's committed offset is further (at least once for access
// events and alerts, whose duplicates are rare).
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flowaudit/flowaudit/internal/backoff"
	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/schemas"
)

// Dependencies are what the sink needs from the rest of the process.
type Dependencies struct {
	Kafka      kafka.Configuration
	ClickHouse clickhousedb.Configuration
}

// Component is the flow sink.
type Component struct {
	r       *reporter.Reporter
	log     *slog.Logger
	cfg     Configuration
	deps    Dependencies
	metrics *metrics
	ready   *reporter.Readiness
	sampler *reporter.Sampler

	conn    driver.Conn
	client  *kgo.Client
	version schemas.ServerVersion

	mu      sync.Mutex // guards writers, rows and first, shared with rebalance callbacks
	writers map[string]topicWriter
	flows   *flowWriter
	rows    int
	first   time.Time

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	fatal  chan error
	// migrated closes once the schema is up to date.
	migrated chan struct{}
}

// New validates the configuration and prepares the sink; Start connects.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Component, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conn, err := clickhousedb.Open(deps.ClickHouse)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Component{
		r:        r,
		log:      r.Logger.With("component", "sink"),
		cfg:      cfg,
		deps:     deps,
		metrics:  newMetrics(r.Registry),
		ready:    r.Readiness("sink"),
		sampler:  reporter.NewSampler(10 * time.Second),
		conn:     conn,
		writers:  map[string]topicWriter{},
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		fatal:    make(chan error, 1),
		migrated: make(chan struct{}),
	}, nil
}

// Start returns at once; a goroutine waits for ClickHouse, migrates the
// schema, then joins the consumer group. Until then /readyz says why not.
// Flows keep arriving in Kafka meanwhile, so nothing is lost while
// ClickHouse is down at start.
func (c *Component) Start() error {
	go c.run()
	return nil
}

// Migrated returns a channel closed once the sink has migrated
// ClickHouse: readers of its tables in the same process start after it.
func (c *Component) Migrated() <-chan struct{} { return c.migrated }

// Done returns a channel that receives an error if the sink stops working.
func (c *Component) Done() <-chan error { return c.fatal }

// Stop flushes what was consumed (bounded by sink.shutdown_timeout),
// commits, and leaves the group.
func (c *Component) Stop() error {
	c.cancel()
	<-c.done
	return c.conn.Close()
}

func (c *Component) run() {
	defer close(c.done)
	c.ready.NotReady("waiting for ClickHouse at " + c.deps.ClickHouse.Addr)
	err := clickhousedb.WaitReady(c.ctx, c.conn, func(err error) {
		if ok, _ := c.sampler.Allow("wait"); ok {
			c.log.Warn("ClickHouse not reachable yet; flows wait in Kafka", "addr", c.deps.ClickHouse.Addr, "err", err)
		}
	})
	if err != nil {
		return // stopped before ClickHouse came up
	}
	for {
		c.version, err = Migrate(c.ctx, c.conn, c.deps.ClickHouse.Database, c.deps.ClickHouse.Retention, c.log)
		if err == nil {
			close(c.migrated)
			break
		}
		if c.ctx.Err() != nil {
			return
		}
		c.log.Error("migration failed; retrying", "err", err)
		c.ready.NotReady("migration failed: " + err.Error())
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(c.cfg.MaxRetryBackoff):
		}
	}
	flowsTopic := c.deps.Kafka.Topic(kafka.TopicEnriched)
	if c.cfg.FlowsFrom == "flows" {
		flowsTopic = c.deps.Kafka.Topic(kafka.TopicFlows)
	}
	flows := newFlowWriter(flowsTopic, c.version.Modern(), c.metrics.duplicates.Inc)
	c.flows = flows
	access := &accessWriter{name: c.deps.Kafka.Topic(kafka.TopicAccess), modern: c.version.Modern()}
	alerts := &alertWriter{name: c.deps.Kafka.Topic(kafka.TopicAlerts), modern: c.version.Modern()}
	versions := &policyVersionWriter{name: c.deps.Kafka.Topic(kafka.TopicPolicy)}
	var topics []string
	for _, w := range []topicWriter{flows, access, alerts, versions} {
		c.writers[w.topic()] = w
		topics = append(topics, w.topic())
	}
	go c.retentionLoop()

	opts := append(kafka.ClientOptions(c.deps.Kafka, "sink"),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumerGroup(c.cfg.ConsumerGroup),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
		kgo.AdjustFetchOffsetsFn(c.adjustOffsets),
	)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		c.fatal <- fmt.Errorf("unable to create Kafka consumer: %w", err)
		return
	}
	c.client = client
	c.ready.Ready()
	c.log.Info("sink consuming", "topics", topics, "group", c.cfg.ConsumerGroup, "clickhouse", c.version.String())
	c.consume()

	// Clean stop: flush and commit within the shutdown deadline, then
	// leave the group so the partitions move at once.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ShutdownTimeout)
	if err := c.flush(ctx); err != nil {
		c.log.Warn("final flush incomplete; those rows will be read again on restart", "err", err)
	}
	cancel()
	client.AllowRebalance()
	client.Close()
}

func (c *Component) consume() {
	for c.ctx.Err() == nil {
		pollCtx := c.ctx
		var cancel context.CancelFunc = func() {}
		c.mu.Lock()
		if c.rows > 0 {
			pollCtx, cancel = context.WithDeadline(c.ctx, c.first.Add(c.cfg.BatchInterval))
		}
		c.mu.Unlock()
		fetches := c.client.PollRecords(pollCtx, 50_000)
		cancel()
		if fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			if ok, n := c.sampler.Allow("fetch"); ok {
				c.log.Warn("fetch error (retrying)", "topic", t, "partition", p, "err", err, "suppressed", n)
			}
		})
		c.mu.Lock()
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				last := p.Records[len(p.Records)-1].Offset
				c.metrics.lag.WithLabelValues(p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(max(p.HighWatermark-last-1, 0)))
			}
			for _, rec := range p.Records {
				c.add(rec)
			}
		})
		due := c.rows >= c.cfg.BatchRows || (c.rows > 0 && time.Since(c.first) >= c.cfg.BatchInterval)
		c.mu.Unlock()
		if due {
			if err := c.flush(c.ctx); err != nil && c.ctx.Err() == nil {
				c.log.Error("flush failed", "err", err)
			}
		}
		c.client.AllowRebalance()
	}
}

// add decodes one record into its partition's pending rows. Undecodable
// records are counted and skipped: they can never be inserted, and
// blocking on them would stop the partition for good.
func (c *Component) add(rec *kgo.Record) {
	w := c.writers[rec.Topic]
	if w == nil {
		return
	}
	n, err := w.add(rec)
	if err != nil {
		c.metrics.malformed.Inc()
		if ok, n := c.sampler.Allow("malformed"); ok {
			c.log.Warn("skipping undecodable record", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err, "suppressed", n)
		}
		return
	}
	if c.rows == 0 && n > 0 {
		c.first = time.Now()
	}
	c.rows += n
	c.metrics.pending.Set(float64(c.rows))
}

// flush writes every topic's pending rows: for each topic it inserts
// them, records the offsets in ClickHouse, then commits them to Kafka.
// Insert failures are retried until ctx ends; on failure nothing of that
// topic is committed and its rows stay pending.
func (c *Component) flush(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, w := range c.writers {
		if len(w.offsets()) == 0 {
			continue
		}
		if err := c.flushTopic(ctx, w); err != nil {
			errs = append(errs, err)
		}
	}
	if c.flows != nil && c.flows.skipped > 0 {
		c.log.Info("skipped flow records ClickHouse already has (read again after a crash, or produced again by enrich)", "records", c.flows.skipped)
		c.flows.skipped = 0
	}
	c.rows = 0
	for _, w := range c.writers {
		c.rows += w.rows()
	}
	if c.rows > 0 {
		// Rows held back (a source whose chunks are not all in) wait
		// for the next interval, not for the next poll.
		c.first = time.Now()
	}
	c.metrics.pending.Set(float64(c.rows))
	return errors.Join(errs...)
}

func (c *Component) flushTopic(ctx context.Context, w topicWriter) error {
	db := c.deps.ClickHouse.Database
	if n := w.ready(); n > 0 {
		if err := c.retry(ctx, "insert into "+w.table(), func(ctx context.Context) error {
			start := time.Now()
			if err := w.insert(ctx, c.conn, db); err != nil {
				return err
			}
			c.metrics.insertDuration.WithLabelValues(w.table()).Observe(time.Since(start).Seconds())
			return nil
		}); err != nil {
			return err
		}
		c.metrics.rows.WithLabelValues(w.table()).Add(float64(n))
		c.metrics.batches.WithLabelValues(w.table()).Inc()
	}
	// The rows are in: from here on a stop request must not interrupt
	// recording their offsets, or they would be inserted again.
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offsets := w.offsets()
	w.clear()
	if err := c.retry(cctx, "record offsets", func(ctx context.Context) error {
		return c.insertOffsets(ctx, w.topic(), offsets)
	}); err != nil {
		// Only the duplicate guard is missing; the Kafka commit below
		// still avoids re-reading the rows.
		c.log.Warn("could not record offsets in ClickHouse", "topic", w.topic(), "err", err)
	}
	commit := map[string]map[int32]kgo.EpochOffset{w.topic(): {}}
	for p, off := range offsets {
		commit[w.topic()][p] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	var commitErr error
	done := make(chan struct{})
	c.client.CommitOffsetsSync(cctx, commit, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		defer close(done)
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
					commitErr = errors.Join(commitErr, fmt.Errorf("partition %d: %w", p.Partition, e))
				}
			}
		}
	})
	<-done
	if commitErr != nil {
		c.metrics.commitErrors.Inc()
		c.log.Warn("offset commit failed after insert; ClickHouse's offset record prevents re-inserting", "topic", w.topic(), "err", commitErr)
	}
	return nil
}

// retry runs fn until it succeeds or ctx ends, backing off exponentially
// up to sink.max_retry_backoff. Every ClickHouse error is treated as
// retryable: a server outage, a full disk or a missing table are all fixed
// outside the sink, and skipping would lose data.
func (c *Component) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		wait := backoff.Delay(100*time.Millisecond, c.cfg.MaxRetryBackoff, attempt, false)
		// An attempt is never cut short by ctx: an INSERT cancelled after
		// its data went out may still land, and retrying it would write
		// the rows twice. ctx only stops the retrying between attempts.
		actx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := fn(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				c.log.Info("ClickHouse accepted the batch after retries", "what", what, "attempts", attempt)
				c.ready.Ready()
			}
			return nil
		}
		c.metrics.chErrors.WithLabelValues(what).Inc()
		c.ready.NotReady(what + " failing: " + err.Error())
		if ok, n := c.sampler.Allow("retry/" + what); ok {
			c.log.Warn("ClickHouse call failed; retrying", "what", what, "attempt", attempt, "backoff", wait, "err", err, "suppressed", n)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up after %d attempts: %w", what, attempt, err)
		case <-time.After(wait):
		}
	}
}

func (c *Component) insertOffsets(ctx context.Context, topic string, offsets map[int32]int64) error {
	batch, err := c.conn.PrepareBatch(ctx, "INSERT INTO "+c.deps.ClickHouse.Database+".kafka_offsets (consumer_group, topic, partition, next_offset)")
	if err != nil {
		return err
	}
	defer batch.Abort()
	for p, off := range offsets {
		if err := batch.Append(c.cfg.ConsumerGroup, topic, uint32(p), off); err != nil {
			return err
		}
	}
	return batch.Send()
}

// onAssigned starts newly assigned flows partitions from what
// ClickHouse has (sink_progress), so that records already inserted are
// skipped whoever inserted them. A progress entry at or beyond its source
// partition's end comes from an earlier incarnation of the topic (a wiped
// broker data_dir) and is ignored, or nothing would ever be inserted
// again. If ClickHouse cannot be read the partitions start without it:
// duplicates are then possible, losses are not.
func (c *Component) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	parts := assigned[c.flows.topic()]
	if len(parts) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var progress map[int32]map[uint16]int64
	if err := c.retry(rctx, "read sink_progress", func(ctx context.Context) (err error) {
		// An INSERT a dead sink sent may still be running: it lands first.
		if err := waitRunningInserts(ctx, c.conn, c.deps.ClickHouse.Database); err != nil {
			return err
		}
		progress, err = readProgress(ctx, c.conn, c.deps.ClickHouse.Database)
		return err
	}); err != nil {
		c.log.Warn("cannot read what ClickHouse has; records inserted before a crash may be inserted again", "err", err)
	}
	sourceTopic := c.deps.Kafka.Topic(kafka.TopicFlows)
	topics := []string{sourceTopic}
	if c.flows.topic() != sourceTopic {
		topics = append(topics, c.flows.topic())
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(rctx, topics...)
	if err != nil {
		c.log.Warn("cannot list end offsets to check the progress record", "err", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range parts {
		pp := progress[p]
		for sp, off := range pp {
			topic, part := sourceTopic, int32(sp)
			if sp == noSource {
				topic, part = c.flows.topic(), p
			}
			if end, ok := ends.Lookup(topic, part); ok && end.Err == nil && off >= end.Offset {
				c.log.Warn("ignoring a progress record beyond the end of its topic (was the broker's data_dir wiped?)",
					"input_partition", p, "source_topic", topic, "source_partition", part, "recorded", off, "end", end.Offset)
				delete(pp, sp)
			}
		}
		c.flows.setProgress(p, pp)
	}
}

// onRevoked flushes before partitions move away, so the next owner starts
// after what we inserted. If ClickHouse is down the flush gives up in
// time for the rebalance; the rows are dropped uncommitted and the new
// owner reads them again.
func (c *Component) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if c.ctx.Err() != nil {
		// Stopping: the final flush already ran within
		// sink.shutdown_timeout; trying again here would stretch the stop.
		c.drop(revoked)
		return
	}
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := c.flush(fctx); err != nil {
		c.log.Warn("flush before rebalance failed; another member will re-read those rows", "err", err)
	}
	c.drop(revoked)
}

// onLost drops lost partitions' rows: we may no longer commit them.
func (c *Component) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.drop(lost)
}

func (c *Component) drop(m map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, parts := range m {
		if w := c.writers[topic]; w != nil {
			c.rows -= w.drop(parts)
		}
	}
	c.metrics.pending.Set(float64(c.rows))
}

// adjustOffsets resumes each assigned partition from ClickHouse's offset
// record when it is ahead of Kafka's committed offset: the previous owner
// inserted those rows but died before committing.
func (c *Component) adjustOffsets(ctx context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := c.conn.Query(qctx, "SELECT topic, partition, max(next_offset) FROM "+c.deps.ClickHouse.Database+
		".kafka_offsets WHERE consumer_group = ? GROUP BY topic, partition", c.cfg.ConsumerGroup)
	if err != nil {
		c.log.Warn("cannot read ClickHouse offset record; resuming from Kafka's committed offsets", "err", err)
		return assigned, nil
	}
	defer rows.Close()
	for rows.Next() {
		var topic string
		var p uint32
		var off int64
		if err := rows.Scan(&topic, &p, &off); err != nil {
			return assigned, nil
		}
		cur, ok := assigned[topic][int32(p)]
		if !ok {
			continue
		}
		if committed := cur.EpochOffset().Offset; committed >= 0 && committed >= off {
			continue
		}
		c.log.Info("resuming partition from ClickHouse's offset record", "topic", topic, "partition", p, "kafka_committed", cur.EpochOffset().Offset, "clickhouse", off)
		c.metrics.skippedDup.Inc()
		assigned[topic][int32(p)] = kgo.NewOffset().At(off).WithEpoch(-1)
	}
	return assigned, nil
}
