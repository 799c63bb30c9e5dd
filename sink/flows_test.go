package sink

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/schemas"
)

// enrichedRecord is an enriched record of n flows from source record
// (sp, so), chunk i of chunks, at input offset off.
func enrichedRecord(t *testing.T, off int64, sp int32, so int64, i, chunks uint16, n int) *kgo.Record {
	t.Helper()
	b := schemas.FlowBatch{TimeReceived: 1e18}
	for j := 0; j < n; j++ {
		b.Flows = append(b.Flows, schemas.Flow{Bytes: uint64(so*100 + int64(i)*10 + int64(j))})
	}
	return &kgo.Record{Partition: 0, Offset: off, Value: schemas.AppendFlowBatch(nil, &b),
		Headers: []kgo.RecordHeader{kafka.Source{Partition: sp, Offset: so, Chunk: i, Chunks: chunks}.Header()}}
}

// readyBytes lists the bytes of the ready rows: which flows the next
// insert takes.
func readyBytes(w *flowWriter) []uint64 {
	var out []uint64
	for _, pr := range w.parts {
		h, _ := pr.hold()
		out = append(out, pr.cols.bytes[:h]...)
	}
	return out
}

func TestFlowWriterSkipsWhatClickHouseHas(t *testing.T) {
	skipped := 0
	w := newFlowWriter("enriched", false, func() { skipped++ })
	// ClickHouse has source records up to offset 10 of source partition 1.
	w.setProgress(0, map[uint16]int64{1: 10})
	for _, rec := range []*kgo.Record{
		enrichedRecord(t, 100, 1, 9, 0, 1, 2),  // re-read: skipped
		enrichedRecord(t, 101, 1, 10, 0, 1, 2), // skipped
		enrichedRecord(t, 102, 1, 11, 0, 1, 2), // new
		enrichedRecord(t, 103, 2, 5, 0, 1, 1),  // other source partition, new
		enrichedRecord(t, 104, 1, 11, 0, 1, 2), // produced again by enrich: skipped
		enrichedRecord(t, 105, 1, 12, 0, 2, 1), // chunk 0 of 2: held
	} {
		if _, err := w.add(rec); err != nil {
			t.Fatal(err)
		}
	}
	if skipped != 3 {
		t.Errorf("skipped %d records, want 3", skipped)
	}
	if diff := cmp.Diff(readyBytes(w), []uint64{1100, 1101, 500}); diff != "" {
		t.Errorf("ready rows (-got +want):\n%s", diff)
	}
	// The commit stops before the held chunk, so a restart reads it again.
	if diff := cmp.Diff(w.offsets(), map[int32]int64{0: 105}); diff != "" {
		t.Errorf("offsets (-got +want):\n%s", diff)
	}
	w.clear()
	if w.rows() != 1 || w.ready() != 0 {
		t.Errorf("after clear: rows %d ready %d, want 1 held and 0 ready", w.rows(), w.ready())
	}
	// enrich dies mid-source and produces it again from chunk 0: the
	// first attempt's chunk is replaced, not doubled.
	for _, rec := range []*kgo.Record{
		enrichedRecord(t, 106, 1, 12, 0, 2, 1),
		enrichedRecord(t, 107, 1, 12, 1, 2, 3),
	} {
		if _, err := w.add(rec); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(readyBytes(w), []uint64{1200, 1210, 1211, 1212}); diff != "" {
		t.Errorf("ready rows after the source was produced again (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(w.offsets(), map[int32]int64{0: 108}); diff != "" {
		t.Errorf("offsets (-got +want):\n%s", diff)
	}
	w.clear()
	if diff := cmp.Diff(w.inserted, map[int32]map[uint16]int64{0: {1: 12, 2: 5}}); diff != "" {
		t.Errorf("inserted (-got +want):\n%s", diff)
	}
	// A revoked partition forgets what it buffered and accepted.
	if _, err := w.add(enrichedRecord(t, 108, 1, 13, 0, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if got := w.drop([]int32{0}); got != 1 || w.rows() != 0 {
		t.Errorf("drop = %d, rows %d; want 1, 0", got, w.rows())
	}
}

func TestFlowWriterRecordsWithoutSource(t *testing.T) {
	w := newFlowWriter("flows", false, func() {})
	w.setProgress(0, map[uint16]int64{noSource: 4})
	for off := int64(3); off < 7; off++ {
		rec := enrichedRecord(t, off, 0, off, 0, 1, 1)
		rec.Headers = nil
		if _, err := w.add(rec); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(readyBytes(w), []uint64{500, 600}); diff != "" {
		t.Errorf("ready rows (-got +want):\n%s", diff)
	}
	if got := dedupToken(w.readyRange()); got != "flowaudit-sink 0/65535:5-6" {
		t.Errorf("token %q", got)
	}
}
