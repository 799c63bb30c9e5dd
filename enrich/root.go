// Package enrich labels every flow with where it comes from and goes to
// (segment, workload), who was behind it (identity) and whether the policy
// allows it (verdict). The core (Enricher, IdentityStore) is pure logic with
// no I/O; the Kafka stage (Component) wraps it.
package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

// Dependencies are what the enrich stage needs from the process.
type Dependencies struct {
	Kafka kafka.Configuration
	// Policy is the compiled policy.file; nil runs without a policy:
	// every address is external and every verdict unknown. Reloads
	// arrive through ApplyPolicy.
	Policy *policy.Matcher
	// PolicyContent is the file Policy was compiled from, and PolicyFile
	// its path: both are recorded in policy_versions.
	PolicyContent []byte
	PolicyFile    string
}

// Component is the enrich stage: it consumes flowaudit.flows.v1 in a
// consumer group, labels every flow (segment, workload, identity,
// verdict) and produces flowaudit.enriched.v1, partitioned by source
// address so per-source state downstream stays in one place. Every Component
// also reads all of flowaudit.access.v1 (no group) to keep its identity
// bindings; at start it replays the last enrich.identity_ttl of access
// events, so bindings survive a restart, before it enriches any flow.
type Component struct {
	r       *reporter.Reporter
	log     *slog.Logger
	cfg     Configuration
	deps    Dependencies
	metrics *metrics
	ready   *reporter.Readiness
	sampler *reporter.Sampler

	ids      *IdentityStore
	enricher *Enricher
	geo      *GeoDB // nil without GeoIP databases
	policyMu sync.Mutex
	// published is nudged when a policy version is queued.
	published chan struct{}
	// pendingVersions are applied policies not yet on the policy topic.
	pendingVersions []schemas.PolicyVersion
	policyTopic     string

	flowsTopic, accessTopic, enrichedTopic, deadTopic string
	partitions                                        int32

	flows, access *kgo.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	fatal  chan error
}

// New validates the configuration and prepares the stage.
func New(r *reporter.Reporter, cfg Configuration, deps Dependencies) (*Component, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Component{
		r:             r,
		log:           r.Logger.With("component", "enrich"),
		cfg:           cfg,
		deps:          deps,
		metrics:       newMetrics(r.Registry),
		ready:         r.Readiness("enrich"),
		sampler:       reporter.NewSampler(10 * time.Second),
		ids:           NewIdentityStore(cfg.IdentityTTL),
		flowsTopic:    deps.Kafka.Topic(kafka.TopicFlows),
		accessTopic:   deps.Kafka.Topic(kafka.TopicAccess),
		enrichedTopic: deps.Kafka.Topic(kafka.TopicEnriched),
		policyTopic:   deps.Kafka.Topic(kafka.TopicPolicy),
		deadTopic:     deps.Kafka.Topic(kafka.TopicDeadLetter),
		fatal:         make(chan error, 1),
		published:     make(chan struct{}, 1),
	}
	if deps.Policy != nil {
		s.applied(deps.Policy, deps.PolicyContent)
	}
	s.enricher = NewEnricher(deps.Policy, s.ids)
	if cfg.GeoIPCountryDB != "" || cfg.GeoIPASNDB != "" {
		geo, err := OpenGeo(cfg.GeoIPCountryDB, cfg.GeoIPASNDB)
		if err != nil {
			return nil, fmt.Errorf("enrich.geoip: %w", err)
		}
		s.geo = geo
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// applied queues the record of a policy now in force for
// flowaudit.policy.v1 (and so ClickHouse's policy_versions); Start and the
// reload loop send what is queued. The caller holds policyMu.
func (s *Component) applied(m *policy.Matcher, content []byte) {
	host, _ := os.Hostname()
	v := schemas.PolicyVersion{
		Version: schemas.PolicyVersionOf(content), LoadedAt: uint64(time.Now().UnixNano()), Path: s.deps.PolicyFile,
		Content: content, Host: host, Summary: m.Policy().Summary(),
	}
	s.pendingVersions = append(s.pendingVersions, v)
	s.log.Info("policy applied", "file", s.deps.PolicyFile, "version", v.Version, "summary", v.Summary)
}

// publishVersions produces the queued policy versions and waits for the
// broker; what fails stays queued for the next reload tick. Durable from
// the broker on: the sink writes them to ClickHouse, whenever it is up.
func (s *Component) publishVersions() {
	s.policyMu.Lock()
	pending := s.pendingVersions
	s.pendingVersions = nil
	s.policyMu.Unlock()
	if len(pending) == 0 || s.flows == nil {
		s.requeueVersions(pending)
		return
	}
	var failed []schemas.PolicyVersion
	for i := range pending {
		value, err := schemas.MarshalPolicyVersion(&pending[i])
		if err == nil {
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			err = s.flows.ProduceSync(ctx, &kgo.Record{Topic: s.policyTopic, Partition: 0, Key: []byte(pending[i].Version), Value: value}).FirstErr()
			cancel()
		}
		if err != nil {
			failed = append(failed, pending[i])
			if ok, n := s.sampler.Allow("policy-version"); ok {
				s.log.Warn("policy version not recorded yet; retrying on the next reload check", "version", pending[i].Version, "err", err, "suppressed", n)
			}
			continue
		}
		s.metrics.policyVersions.Inc()
	}
	s.requeueVersions(failed)
}

func (s *Component) requeueVersions(v []schemas.PolicyVersion) {
	if len(v) == 0 {
		return
	}
	s.policyMu.Lock()
	s.pendingVersions = append(v, s.pendingVersions...)
	s.policyMu.Unlock()
}

// Start connects to the broker and starts the stage's goroutines; flows
// are enriched once the identity bindings have caught up.
func (s *Component) Start() error {
	s.ready.NotReady("replaying access events")
	parts, err := s.topicPartitions(s.enrichedTopic)
	if err != nil {
		return err
	}
	s.partitions = parts
	since := time.Now().Add(-s.cfg.IdentityTTL).UnixMilli()
	access, err := kgo.NewClient(append(kafka.ClientOptions(s.deps.Kafka, "enrich-access"),
		kgo.ConsumeTopics(s.accessTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(since)),
	)...)
	if err != nil {
		return fmt.Errorf("unable to create access consumer: %w", err)
	}
	s.access = access
	flows, err := kgo.NewClient(append(kafka.ClientOptions(s.deps.Kafka, "enrich"),
		kgo.ConsumeTopics(s.flowsTopic),
		kgo.ConsumerGroup(s.cfg.ConsumerGroup),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedBytes(256<<20),
		// Batches stay within the broker's default message.max.bytes
		// (1 MiB): a larger one is refused for good, not retried.
		kgo.ProducerBatchMaxBytes(kafka.MaxBatchBytes),
		kgo.FetchMaxBytes(64<<20),
	)...)
	if err != nil {
		access.Close()
		return fmt.Errorf("unable to create flow consumer: %w", err)
	}
	s.flows = flows
	caughtUp := make(chan struct{})
	s.wg.Add(3)
	go s.accessLoop(since, caughtUp)
	go func() {
		defer s.wg.Done()
		select {
		case <-caughtUp:
		case <-s.ctx.Done():
			return
		}
		s.ready.Ready()
		s.log.Info("enriching flows", "from", s.flowsTopic, "to", s.enrichedTopic, "partitions", s.partitions,
			"policy", s.deps.PolicyFile, "identity_bindings", s.ids.Len())
		if err := s.flowLoop(); err != nil && s.ctx.Err() == nil {
			s.fatal <- err
		}
	}()
	go s.publishLoop()
	return nil
}

// Done returns a channel that receives an error if the stage stops
// working.
func (s *Component) Done() <-chan error { return s.fatal }

// Stop finishes the current poll (produced and committed), then closes.
func (s *Component) Stop() error {
	s.cancel()
	s.wg.Wait()
	if s.flows != nil {
		// The loop may have stopped between a poll and its
		// AllowRebalance; leaving the group needs rebalances allowed.
		s.flows.AllowRebalance()
		s.flows.Close()
	}
	if s.access != nil {
		s.access.Close()
	}
	if s.geo != nil {
		return s.geo.Close()
	}
	return nil
}

func (s *Component) topicPartitions(topic string) (int32, error) {
	cl, err := kgo.NewClient(kafka.ClientOptions(s.deps.Kafka, "enrich-admin")...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(s.ctx, 60*time.Second)
	defer cancel()
	for {
		td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
		if err == nil {
			if d, ok := td[topic]; ok && d.Err == nil && len(d.Partitions) > 0 {
				return int32(len(d.Partitions)), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("topic %s not found on %v: %v", topic, s.deps.Kafka.SeedBrokers(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// accessLoop applies every access event to the identity bindings. It
// closes caughtUp once it has read up to the ends the topic had when the
// stage started.
func (s *Component) accessLoop(since int64, caughtUp chan struct{}) {
	defer s.wg.Done()
	remaining, err := s.accessBacklog(since)
	if err != nil {
		s.log.Warn("cannot size the access-event backlog; enriching without waiting for it", "err", err)
	}
	done := false
	finish := func() {
		if !done && len(remaining) == 0 {
			done = true
			close(caughtUp)
		}
	}
	finish()
	expire := time.NewTicker(time.Minute)
	defer expire.Stop()
	var ev schemas.AccessEvent
	for {
		select {
		case <-expire.C:
			s.ids.Expire(uint64(time.Now().UnixNano()))
		default:
		}
		fetches := s.access.PollFetches(s.ctx)
		if fetches.IsClientClosed() || s.ctx.Err() != nil {
			return
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			if end, ok := remaining[rec.Partition]; ok && rec.Offset+1 >= end {
				delete(remaining, rec.Partition)
			}
			if err := schemas.UnmarshalAccessEvent(rec.Value, &ev); err != nil {
				s.metrics.malformed.Inc()
				return
			}
			s.ids.Observe(&ev)
			s.metrics.accessEvents.Inc()
			if ev.Untrusted {
				s.metrics.untrusted.Inc()
			}
		})
		s.metrics.bindings.Set(float64(s.ids.Len()))
		finish()
	}
}

// accessBacklog returns, per partition with records to replay, the end
// offset to reach.
func (s *Component) accessBacklog(since int64) (map[int32]int64, error) {
	adm := kadm.NewClient(s.access)
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, s.accessTopic)
	if err != nil {
		return nil, err
	}
	starts, err := adm.ListOffsetsAfterMilli(ctx, since, s.accessTopic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		start := int64(0)
		if st, ok := starts.Lookup(s.accessTopic, o.Partition); ok && st.Err == nil && st.Offset >= 0 {
			start = st.Offset
		}
		if o.Offset > start {
			out[o.Partition] = o.Offset
		}
	})
	return out, nil
}

// flowLoop enriches polled batches, produces them, waits for the broker,
// then commits: at least once from flows to enriched.
func (s *Component) flowLoop() error {
	var (
		in  schemas.FlowBatch
		dec schemas.FlowDecoder
	)
	bt := newBatcher(s.enricher, s.geo, s.enrichedTopic, s.partitions, s.metrics.flows, s.metrics.attributed)
	var (
		produceErr error
		faults     []produceFault
		errMu      sync.Mutex
	)
	for s.ctx.Err() == nil {
		fetches := s.flows.PollRecords(s.ctx, 5000)
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			if ok, n := s.sampler.Allow("fetch"); ok {
				s.log.Warn("fetch error (retrying)", "topic", t, "partition", p, "err", err, "suppressed", n)
			}
		})
		fetches.EachRecord(func(rec *kgo.Record) {
			if err := dec.Unmarshal(rec.Value, &in); err != nil {
				s.metrics.malformed.Inc()
				if ok, n := s.sampler.Allow("malformed"); ok {
					s.log.Warn("skipping undecodable flow record", "partition", rec.Partition, "offset", rec.Offset, "err", err, "suppressed", n)
				}
				return
			}
			s.metrics.batches.Inc()
			for _, out := range bt.records(&in, rec.Partition, rec.Offset) {
				// Not s.ctx: a stop must not fail records of a batch
				// being finished; the batch is produced and committed whole.
				s.flows.Produce(context.Background(), out,
					func(_ *kgo.Record, err error) {
						if err == nil {
							return
						}
						errMu.Lock()
						defer errMu.Unlock()
						if reason, ok := kafka.RecordFault(err); ok {
							faults = append(faults, produceFault{in: rec, reason: reason, err: err})
							return
						}
						produceErr = err
					})
			}
		})
		// Commit only what the broker has: a crash before this point
		// re-enriches the batches (at least once).
		fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.flows.Flush(fctx)
		cancel()
		if err != nil {
			return fmt.Errorf("enriched flows not acknowledged within 30s: %w", err)
		}
		// Every promise has been called: the records are ours again.
		bt.release()
		errMu.Lock()
		perr, pfaults := produceErr, faults
		faults = nil
		errMu.Unlock()
		if perr != nil {
			s.metrics.produceErrors.Inc()
			return fmt.Errorf("producing enriched flows: %w", perr)
		}
		// Records the broker refuses for what they are can never be
		// produced: dead-lettered, so that the offsets move on instead of
		// failing on the same record after every restart.
		if err := s.deadLetter(pfaults); err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = s.flows.CommitUncommittedOffsets(cctx)
		cancel()
		if err != nil {
			if ok, n := s.sampler.Allow("commit"); ok {
				s.log.Warn("offset commit failed; those batches may be enriched twice", "err", err, "suppressed", n)
			}
		}
		s.flows.AllowRebalance()
	}
	return nil
}

// produceFault is an enriched record the broker refused for good, with
// the input record it came from.
type produceFault struct {
	in     *kgo.Record
	reason string
	err    error
}

// deadLetterPayloadMax bounds the input record copied into a dead letter.
const deadLetterPayloadMax = 64 << 10

// deadLetter sends one dead letter per input record with refused output
// and waits for the broker: only then may the offsets be committed.
func (s *Component) deadLetter(faults []produceFault) error {
	if len(faults) == 0 {
		return nil
	}
	seen := map[*kgo.Record]bool{}
	var recs []*kgo.Record
	for _, f := range faults {
		if seen[f.in] {
			continue
		}
		seen[f.in] = true
		s.metrics.deadLetters.WithLabelValues(f.reason).Inc()
		source := fmt.Sprintf("%s partition %d offset %d", f.in.Topic, f.in.Partition, f.in.Offset)
		if ok, n := s.sampler.Allow("dead-letter/" + f.reason); ok {
			s.log.Error("broker refused an enriched record; dead-lettered, going on", "input", source, "reason", f.reason, "err", f.err, "suppressed", n)
		}
		// Partition 0: the client partitions manually (the enriched
		// topic's partitions are chosen per source address).
		recs = append(recs, s.deps.Kafka.DeadLetterRecord("enrich", source, f.reason, f.err, f.in.Value, deadLetterPayloadMax))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.flows.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("cannot dead-letter enriched records the broker refused (%s): %w", faults[0].err, err)
	}
	return nil
}

// partitionOf maps a source address to a partition of the enriched
// topic: every flow of one source lands on the same partition, so
// per-source detectors see all of it.
func partitionOf(a schemas.Addr, n int32) int {
	// FNV-1a, 32 bits, over the 16 bytes (hash/fnv's, without its
	// allocation).
	h := uint32(2166136261)
	for _, c := range a {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h % uint32(n))
}

// publishLoop records applied policy versions on the policy topic: at
// once when one is applied, and again every policy_reload_interval for
// what the broker did not take.
func (s *Component) publishLoop() {
	defer s.wg.Done()
	s.publishVersions()
	t := time.NewTicker(s.cfg.PolicyReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.published:
		}
		s.publishVersions()
	}
}

// ApplyPolicy puts a reloaded policy in force without stopping the flow
// and queues its record for policy_versions. The process's one policy
// loader calls it (with the Matcher it gives the detect stage too). Safe
// to call from any goroutine.
func (s *Component) ApplyPolicy(m *policy.Matcher, content []byte) {
	s.policyMu.Lock()
	s.enricher.SetMatcher(m)
	s.applied(m, content)
	s.policyMu.Unlock()
	s.metrics.policyReloads.WithLabelValues("ok").Inc()
	select {
	case s.published <- struct{}{}:
	default:
	}
}

// RejectPolicy counts a changed policy file the loader refused; the
// current policy stays in force.
func (s *Component) RejectPolicy(error) {
	s.metrics.policyReloads.WithLabelValues("invalid").Inc()
}
