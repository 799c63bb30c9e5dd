package schemas

import "google.golang.org/protobuf/encoding/protowire"

// AppendFlowBatchChunks encodes b as one or more FlowBatch payloads of at
// most maxBytes each, every one with b's header fields and a contiguous
// run of b's flows, in order, and calls emit with each payload and its
// flows. Kafka refuses records above its message limit for good, so a
// producer splits rather than fail. The split is deterministic: the same
// batch always gives the same chunks. A single flow larger than maxBytes
// alone is emitted in a chunk of its own (and will be refused by the
// broker). buf is reused as the encoding buffer; the payload passed to
// emit is only valid until emit returns. It returns the buffer for reuse.
func AppendFlowBatchChunks(buf []byte, b *FlowBatch, maxBytes int, emit func(value []byte, flows []Flow)) []byte {
	chunk := *b
	header := len(AppendFlowBatch(buf[:0], &FlowBatch{
		TimeReceived: b.TimeReceived, Exporter: b.Exporter, ExporterPort: b.ExporterPort,
		Type: b.Type, ObservationID: b.ObservationID, SequenceNumber: b.SequenceNumber,
	}))
	start, size := 0, header
	flush := func(end int) {
		chunk.Flows = b.Flows[start:end]
		buf = AppendFlowBatch(buf[:0], &chunk)
		emit(buf, chunk.Flows)
		start, size = end, header
	}
	for i := range b.Flows {
		fs := flowSize(&b.Flows[i])
		n := protowire.SizeTag(fieldBatchFlows) + protowire.SizeVarint(uint64(fs)) + fs
		if size+n > maxBytes && i > start {
			flush(i)
		}
		size += n
	}
	if start < len(b.Flows) || len(b.Flows) == 0 {
		flush(len(b.Flows))
	}
	return buf
}

// AppendFlowBatchChunksOf is AppendFlowBatchChunks over the flows of b
// that sel names (indexes into b.Flows, in that order) instead of all of
// them: its payloads are byte for byte those AppendFlowBatchChunks gives
// for a batch with b's header and those flows, without copying a flow.
// emit gets each payload and the part of sel in it. Each flow is sized
// once and encoded once.
func AppendFlowBatchChunksOf(buf []byte, b *FlowBatch, sel []int32, maxBytes int, emit func(value []byte, sel []int32)) []byte {
	buf = AppendFlowBatch(buf[:0], &FlowBatch{
		TimeReceived: b.TimeReceived, Exporter: b.Exporter, ExporterPort: b.ExporterPort,
		Type: b.Type, ObservationID: b.ObservationID, SequenceNumber: b.SequenceNumber,
	})
	header, start := len(buf), 0
	for i, j := range sel {
		f := &b.Flows[j]
		fs := flowSize(f)
		n := protowire.SizeTag(fieldBatchFlows) + protowire.SizeVarint(uint64(fs)) + fs
		if len(buf)+n > maxBytes && i > start {
			emit(buf, sel[start:i])
			buf, start = buf[:header], i
		}
		buf = protowire.AppendTag(buf, fieldBatchFlows, protowire.BytesType)
		buf = protowire.AppendVarint(buf, uint64(fs))
		buf = appendFlow(buf, f)
	}
	if start < len(sel) || len(sel) == 0 {
		emit(buf, sel[start:])
	}
	return buf
}
