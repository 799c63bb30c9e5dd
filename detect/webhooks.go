package detect

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/flowaudit/flowaudit/detect/webhook"
	"github.com/flowaudit/flowaudit/schemas"
)

// seenIDs remembers the last alert IDs handed to the webhooks, so a
// replayed alert is not announced twice.
type seenIDs struct {
	set  map[string]struct{}
	ring []string
	next int
}

func newSeenIDs(n int) *seenIDs { return &seenIDs{set: map[string]struct{}{}, ring: make([]string, n)} }

func (s *seenIDs) add(id string) bool {
	if _, ok := s.set[id]; ok {
		return false
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.set, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % len(s.ring)
	s.set[id] = struct{}{}
	return true
}

// webhookLoop consumes the alerts topic in the webhook consumer group and
// hands every alert to the dispatcher without waiting: each endpoint has
// its own queue and worker, so one that hangs or keeps failing delays no
// other. An alert's offset is committed once every endpoint has delivered
// it or given up on it (dead-lettered as undelivered), in offset order:
// the tracker commits the contiguous done prefix of each partition.
func (c *Component) webhookLoop() {
	defer c.wg.Done()
	defer c.guard("webhook loop")
	seen := newSeenIDs(100_000)
	var a schemas.Alert
	for c.ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(c.ctx, time.Second)
		fetches := c.hooks.PollRecords(pctx, 1000)
		cancel()
		if fetches.IsClientClosed() {
			if c.ctx.Err() == nil {
				c.die(errors.New("detect: the webhook consumer closed while the stage was running"))
			}
			return
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			e := c.commits.add(rec)
			if err := schemas.UnmarshalAlert(rec.Value, &a); err == nil && !a.Update && seen.add(a.ID) {
				if c.dispatcher.EnqueueDone(&a, func(final bool) { c.commits.done(e, final) }) > 0 {
					c.metrics.delivered.Inc()
					return
				}
			}
			c.commits.done(e, true) // nothing to deliver
		})
		c.commitDone(context.Background())
		c.hooks.AllowRebalance()
	}
}

// commitDone commits, for every partition, the offsets after the
// contiguous prefix of alerts every endpoint is done with.
func (c *Component) commitDone(ctx context.Context) {
	offsets := c.commits.ready()
	if len(offsets) == 0 {
		return
	}
	c.hooks.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil && c.ctx.Err() == nil {
			c.log.Warn("webhook offset commit failed", "err", err)
		}
	})
}

// commitTracker follows, per partition of the alerts topic, the offsets
// handed to the dispatcher in order and which of them are done.
type commitTracker struct {
	mu    sync.Mutex
	parts map[string]map[int32]*partTrack
}

type partTrack struct {
	pending []*trackEntry // in offset order
	// stuck: an entry was left at shutdown (not final); nothing at or
	// after it is committed, so the next owner delivers it.
	stuck bool
	dirty bool // a commit is due
	next  kgo.EpochOffset
}

type trackEntry struct {
	part   *partTrack
	offset int64
	epoch  int32
	done   bool
	final  bool
}

func newCommitTracker() *commitTracker {
	return &commitTracker{parts: map[string]map[int32]*partTrack{}}
}

func (t *commitTracker) add(rec *kgo.Record) *trackEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps := t.parts[rec.Topic]
	if ps == nil {
		ps = map[int32]*partTrack{}
		t.parts[rec.Topic] = ps
	}
	p := ps[rec.Partition]
	if p == nil {
		p = &partTrack{}
		ps[rec.Partition] = p
	}
	e := &trackEntry{part: p, offset: rec.Offset, epoch: rec.LeaderEpoch}
	p.pending = append(p.pending, e)
	return e
}

func (t *commitTracker) done(e *trackEntry, final bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.done, e.final = true, final
	p := e.part
	for len(p.pending) > 0 && p.pending[0].done && !p.stuck {
		h := p.pending[0]
		if !h.final {
			p.stuck = true
			break
		}
		p.next = kgo.EpochOffset{Epoch: h.epoch, Offset: h.offset + 1}
		p.dirty = true
		p.pending[0] = nil
		p.pending = p.pending[1:]
	}
}

// ready returns the offsets to commit since the last call.
func (t *commitTracker) ready() map[string]map[int32]kgo.EpochOffset {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out map[string]map[int32]kgo.EpochOffset
	for topic, ps := range t.parts {
		for part, p := range ps {
			if !p.dirty {
				continue
			}
			if out == nil {
				out = map[string]map[int32]kgo.EpochOffset{}
			}
			if out[topic] == nil {
				out[topic] = map[int32]kgo.EpochOffset{}
			}
			out[topic][part] = p.next
			p.dirty = false
		}
	}
	return out
}

// forget drops partitions that moved away: their alerts still queued are
// delivered, but their offsets are the new owner's to commit.
func (t *commitTracker) forget(revoked map[string][]int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for topic, parts := range revoked {
		for _, part := range parts {
			if p := t.parts[topic][part]; p != nil {
				p.stuck = true // late completions commit nothing
				delete(t.parts[topic], part)
			}
		}
	}
}

// undelivered records an alert no endpoint took after the last retry on
// the dead-letter topic.
func (c *Component) undelivered(a *schemas.Alert, endpoint string, err error) {
	if errors.Is(err, webhook.ErrStopped) {
		return // not committed: delivered after the restart
	}
	c.client.Produce(context.Background(), c.deps.Kafka.DeadLetterRecord("webhook", endpoint, "undelivered", err, schemas.AppendAlert(nil, a), -1), nil)
}

// webhookPartitionsGone commits what is done on partitions about to move
// away, then stops tracking them.
func (c *Component) webhookPartitionsGone(ctx context.Context, cl *kgo.Client, gone map[string][]int32) {
	if offsets := c.commits.ready(); len(offsets) > 0 {
		cl.CommitOffsetsSync(ctx, offsets, nil)
	}
	c.commits.forget(gone)
}
