package detect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
)

// checkpointVersion is the first byte of a state record.
const checkpointVersion = 1

// encodeCheckpoint lays out a state record: version, the next offset of
// every consumed partition, then the engine snapshot.
func encodeCheckpoint(offsets map[string]map[int32]int64, snapshot []byte) []byte {
	b := []byte{checkpointVersion}
	n := 0
	for _, ps := range offsets {
		n += len(ps)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for topic, ps := range offsets {
		for p, off := range ps {
			b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
			b = append(b, topic...)
			b = binary.BigEndian.AppendUint32(b, uint32(p))
			b = binary.BigEndian.AppendUint64(b, uint64(off))
		}
	}
	return append(b, snapshot...)
}

var errBadCheckpoint = errors.New("malformed detector checkpoint")

func decodeCheckpoint(b []byte) (map[string]map[int32]int64, []byte, error) {
	if len(b) < 5 || b[0] != checkpointVersion {
		return nil, nil, errBadCheckpoint
	}
	n := binary.BigEndian.Uint32(b[1:])
	b = b[5:]
	out := map[string]map[int32]int64{}
	for i := uint32(0); i < n; i++ {
		if len(b) < 2 {
			return nil, nil, errBadCheckpoint
		}
		l := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+l+12 {
			return nil, nil, errBadCheckpoint
		}
		topic := string(b[2 : 2+l])
		p := int32(binary.BigEndian.Uint32(b[2+l:]))
		off := int64(binary.BigEndian.Uint64(b[6+l:]))
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][p] = off
		b = b[14+l:]
	}
	return out, b, nil
}

// checkpoint waits for everything produced so far, saves the engine's
// state with the consumed offsets, then commits those offsets. Called from
// the consuming goroutine (or a rebalance callback, which the poll lock
// serializes with it).
func (c *Component) checkpoint(ctx context.Context, cl *kgo.Client) {
	if err := cl.Flush(ctx); err != nil {
		return
	}
	c.errMu.Lock()
	perr := c.produceErr
	c.produceErr = nil
	c.errMu.Unlock()
	if perr != nil {
		c.metrics.checkpoints.WithLabelValues("produce_failed").Inc()
		c.log.Error("alerts or keyed events were not accepted; not committing, they will be redone", "err", perr)
		return
	}
	uncommitted := cl.UncommittedOffsets()
	offsets := map[string]map[int32]int64{}
	for topic, ps := range cl.CommittedOffsets() {
		for p, eo := range ps {
			if offsets[topic] == nil {
				offsets[topic] = map[int32]int64{}
			}
			offsets[topic][p] = eo.Offset
		}
	}
	for topic, ps := range uncommitted {
		for p, eo := range ps {
			if offsets[topic] == nil {
				offsets[topic] = map[int32]int64{}
			}
			offsets[topic][p] = eo.Offset
		}
	}
	snapshot, err := c.engine.MarshalBinary()
	if err != nil {
		c.metrics.checkpoints.WithLabelValues("error").Inc()
		c.log.Error("cannot snapshot detector state", "err", err)
		return
	}
	value := encodeCheckpoint(offsets, snapshot)
	c.generation++
	var recs []*kgo.Record
	for i, chunk := range splitChunks(value, checkpointChunk) {
		recs = append(recs, &kgo.Record{Topic: c.state, Key: []byte(fmt.Sprintf("%s#%d", c.stateKey, i)),
			Value: encodeChunk(c.generation, i, len(value), chunk)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		c.metrics.checkpoints.WithLabelValues("error").Inc()
		if ok, _ := c.sampler.Allow("checkpoint"); ok {
			c.log.Warn("cannot save detector checkpoint; offsets stay uncommitted", "err", err)
		}
		return
	}
	c.metrics.checkpointB.Set(float64(len(value)))
	if len(uncommitted) > 0 {
		if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("offset commit failed after checkpoint; the checkpoint's offsets will be used on restart", "err", err)
		}
	}
	c.metrics.checkpoints.WithLabelValues("ok").Inc()
}

// restore reads this instance's last checkpoint, if any, into the engine.
func (c *Component) restore() error {
	cl, err := kgo.NewClient(append(kafka.ClientOptions(c.deps.Kafka, "detect-state"), kgo.ConsumeTopics(c.state),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(c.ctx, 60*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, c.state)
	if err != nil {
		return fmt.Errorf("reading %s: %w", c.state, err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	var chunks checkpointChunks
	prefix := c.stateKey + "#"
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return fmt.Errorf("reading %s: %w", c.state, ctx.Err())
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			if strings.HasPrefix(string(rec.Key), prefix) {
				chunks.add(rec.Value)
			}
			if end, ok := remaining[rec.Partition]; ok && rec.Offset+1 >= end {
				delete(remaining, rec.Partition)
			}
		})
	}
	last, gen := chunks.latest()
	c.generation = gen
	if last == nil {
		c.log.Info("no detector checkpoint yet; starting fresh", "instance", c.stateKey)
		return nil
	}
	offsets, snapshot, err := decodeCheckpoint(last)
	if err == nil {
		err = c.engine.UnmarshalBinary(snapshot)
	}
	if err != nil {
		c.log.Error("detector checkpoint unreadable; starting fresh", "err", err)
		return nil
	}
	c.restored = offsets
	c.log.Info("detector state restored from checkpoint", "instance", c.stateKey, "bytes", len(last))
	return nil
}

// adjustOffsets resumes from the checkpoint's offsets where they are
// ahead of the committed ones (the process died between the two).
func (c *Component) adjustOffsets(_ context.Context, assigned map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, ps := range assigned {
		for p, cur := range ps {
			off, ok := c.restored[topic][p]
			if !ok {
				continue
			}
			if committed := cur.EpochOffset().Offset; committed >= 0 && committed >= off {
				continue
			}
			ps[p] = kgo.NewOffset().At(off).WithEpoch(-1)
		}
	}
	return assigned, nil
}

// A checkpoint larger than one Kafka message is written as chunks, keyed
// INSTANCE#0, INSTANCE#1, …, each carrying the checkpoint's generation;
// a restore takes the newest generation whose chunks are all there, so a
// crash halfway through writing one falls back to the previous one.
const checkpointChunk = 512 << 10

func splitChunks(b []byte, size int) [][]byte {
	var out [][]byte
	for len(b) > size {
		out = append(out, b[:size])
		b = b[size:]
	}
	return append(out, b)
}

func encodeChunk(gen uint64, index, total int, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, gen)
	b = binary.BigEndian.AppendUint32(b, uint32(index))
	b = binary.BigEndian.AppendUint32(b, uint32(total))
	return append(b, data...)
}

// checkpointChunks collects chunks per generation while the state topic
// is read from the start.
type checkpointChunks struct {
	gens map[uint64]*chunkSet
}

type chunkSet struct {
	total int
	parts map[int][]byte
}

func (c *checkpointChunks) add(v []byte) {
	if len(v) < 16 {
		return
	}
	gen := binary.BigEndian.Uint64(v)
	index := int(binary.BigEndian.Uint32(v[8:]))
	total := int(binary.BigEndian.Uint32(v[12:]))
	if c.gens == nil {
		c.gens = map[uint64]*chunkSet{}
	}
	s := c.gens[gen]
	if s == nil {
		s = &chunkSet{total: total, parts: map[int][]byte{}}
		c.gens[gen] = s
	}
	s.parts[index] = v[16:]
}

// latest returns the newest complete checkpoint and its generation.
func (c *checkpointChunks) latest() ([]byte, uint64) {
	var best uint64
	var out []byte
	for gen, s := range c.gens {
		if gen < best {
			continue
		}
		var b []byte
		for i := 0; len(b) < s.total; i++ {
			part, ok := s.parts[i]
			if !ok {
				b = nil
				break
			}
			b = append(b, part...)
		}
		if b != nil && len(b) == s.total {
			best, out = gen, b
		}
	}
	return out, best
}
