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
