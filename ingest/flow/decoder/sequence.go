package decoder

import (
	"sync"

	"github.com/flowaudit/flowaudit/schemas"
)

// Sequence jumps beyond these are taken as an exporter restart (or a
// sequence reset) rather than loss: a collector would have noticed an
// outage of that size by other means, and reporting millions of lost
// flows for a reboot would drown real loss.
const (
	maxDatagramJump = 1 << 20 // datagram-counting protocols (v9, sFlow)
	maxFlowJump     = 1 << 26 // flow-counting protocols (v5, IPFIX)
)

// maxStreams bounds the sequence spaces tracked at once (about 100 bytes
// each).
const maxStreams = 100000

// streamKey identifies one sequence-number space: an exporter's
// observation domain (v5 engine, v9 source ID, IPFIX domain, sFlow
// sub-agent) in one protocol.
type streamKey struct {
	exporter schemas.Addr
	domain   uint32
	typ      schemas.FlowType
}

type streamState struct {
	next      uint32 // sequence number expected next
	lastCount uint32 // records in the last datagram
	lastSeq   uint32 // sequence number of the last datagram
	lastFlows uint32 // flow records in the last datagram
}

// SequenceTracker detects lost datagrams from header sequence numbers,
// per exporter and observation domain (sFlow: per exporter address and
// sub-agent; the agent address inside the datagram is not part of the
// batch, so a relay forwarding several agents would mix them). It is safe
// for concurrent use.
type SequenceTracker struct {
	mu      sync.Mutex
	streams map[streamKey]streamState
}

// NewSequenceTracker returns an empty tracker.
func NewSequenceTracker() *SequenceTracker {
	return &SequenceTracker{streams: map[streamKey]streamState{}}
}

// Observe records batch b, whose datagram held datagramFlowCount flow
// records (decoded or not, so that an unknown template is not mistaken for
// loss; for IPFIX count every data record, options data included, since
// the sequence counts those), and returns how many datagrams and flows
// were lost between the previous datagram of the same stream and this one.
//
// The protocols count differently, and one of the two figures is always
// an estimate:
//   - NetFlow v9 and sFlow count datagrams: lostDatagrams is exact and
//     lostFlows assumes lost datagrams held as many flows as this one.
//   - NetFlow v5 and IPFIX count flow records: lostFlows is exact and
//     lostDatagrams assumes lost datagrams held as many as this one
//     (rounded up). Some exporters (softflowd) stamp IPFIX messages with
//     the count after rather than before their records, and some leave
//     options data records out of the count; a message that matches any
//     of these conventions is not reported as loss.
//
// The first datagram of a stream, duplicates and reordered datagrams
// report (0, 0); a jump backwards or forwards beyond a plausible loss
// (an exporter restart) quietly restarts tracking from this datagram.
func (t *SequenceTracker) Observe(b *schemas.FlowBatch, datagramFlowCount int) (lostDatagrams, lostFlows uint64) {
	if b.Type == schemas.FlowTypeUnknown {
		return 0, 0
	}
	count := uint32(max(datagramFlowCount, 0))
	key := streamKey{exporter: b.Exporter, domain: b.ObservationID, typ: b.Type}
	seq := b.SequenceNumber
	countsFlows := b.Type == schemas.FlowTypeNetFlowV5 || b.Type == schemas.FlowTypeIPFIX

	t.mu.Lock()
	defer t.mu.Unlock()
	prev, seen := t.streams[key]
	flows := uint32(len(b.Flows))
	advance := func() {
		if countsFlows {
			t.streams[key] = streamState{next: seq + count, lastCount: count, lastSeq: seq, lastFlows: flows}
		} else {
			t.streams[key] = streamState{next: seq + 1, lastCount: count, lastSeq: seq, lastFlows: flows}
		}
	}
	if !seen {
		if len(t.streams) >= maxStreams {
			// Anyone can send valid datagrams from many addresses: start
			// over rather than grow without bound. Each stream then
			// misses one comparison, nothing is reported as lost.
			clear(t.streams)
		}
		advance()
		return 0, 0
	}
	// Signed distance modulo 2^32, so counter wrap-around is not a jump.
	gap := int64(int32(seq - prev.next))
	if countsFlows && b.Type == schemas.FlowTypeIPFIX && gap != 0 {
		// softflowd-style stamping, seq(n) = seq(n-1) + count(n), and
		// exporters that count flow records only.
		d := seq - prev.lastSeq
		if d == count || d == flows || d == prev.lastFlows {
			gap = 0
		}
	}
	limit := int64(maxDatagramJump)
	if countsFlows {
		limit = maxFlowJump
	}
	switch {
	case gap == 0:
		advance()
		return 0, 0
	case gap > 0 && gap <= limit:
		advance()
		if countsFlows {
			lostFlows = uint64(gap)
			per := uint64(max(count, 1))
			lostDatagrams = (lostFlows + per - 1) / per
		} else {
			lostDatagrams = uint64(gap)
			lostFlows = lostDatagrams * uint64(count)
		}
		return lostDatagrams, lostFlows
	case gap < 0 && -gap <= limit/16:
		// Late or duplicate datagram: it was already counted as lost (or
		// seen), and moving backwards would double-count what follows.
		return 0, 0
	default:
		advance()
		return 0, 0
	}
}
