package detect

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/flowaudit/flowaudit/detect/webhook"
	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/schemas"
	"github.com/flowaudit/flowaudit/schemas/pb"
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
// commits only once the dispatcher delivered (or gave up on) each alert.
func (c *Component) webhookLoop() {
	defer c.wg.Done()
	seen := newSeenIDs(100_000)
	var a schemas.Alert
	for c.ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(c.ctx, time.Second)
		fetches := c.hooks.PollRecords(pctx, 1000)
		cancel()
		if fetches.IsClientClosed() {
			return
		}
		// One alert at a time: each is committed once delivered (or given
		// up), so a stop during an outage redelivers only what was not
		// delivered, never what was.
		stopped := false
		fetches.EachRecord(func(rec *kgo.Record) {
			if stopped {
				return
			}
			if err := schemas.UnmarshalAlert(rec.Value, &a); err == nil && !a.Update && seen.add(a.ID) {
				if c.dispatcher.Enqueue(&a) > 0 {
					c.metrics.delivered.Inc()
				}
				if err := c.dispatcher.Flush(c.ctx); err != nil {
					stopped = true // stopping: the next owner delivers it
					return
				}
			}
			if err := c.hooks.CommitRecords(context.Background(), rec); err != nil && c.ctx.Err() == nil {
				c.log.Warn("webhook offset commit failed", "err", err)
			}
		})
		c.hooks.AllowRebalance()
		if stopped {
			return
		}
	}
}

// undelivered records an alert no endpoint took after the last retry on
// the dead-letter topic.
func (c *Component) undelivered(a *schemas.Alert, endpoint string, err error) {
	if errors.Is(err, webhook.ErrStopped) {
		return // not committed: delivered after the restart
	}
	dl := &pb.DeadLetter{
		Time: uint64(time.Now().UnixNano()), Stage: "webhook", Source: endpoint,
		Reason: "undelivered", Error: err.Error(), Payload: schemas.AppendAlert(nil, a),
	}
	value, merr := proto.Marshal(dl)
	if merr != nil {
		return
	}
	c.client.Produce(context.Background(), &kgo.Record{Topic: c.deps.Kafka.Topic(kafka.TopicDeadLetter), Value: value}, nil)
}
