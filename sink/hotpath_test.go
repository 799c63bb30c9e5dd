package sink

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/schemas"
)

// flowRow is one flow with its batch header and source, for tests that
// buffer rows without records.
type flowRow struct {
	received uint64
	exporter schemas.Addr
	typ      schemas.FlowType
	obsID    uint32
	flow     schemas.Flow
	// part is the input partition; srcPart and srcOff the source record
	// (see flowWriter).
	part, srcPart uint16
	srcOff        int64
}

// appendRow buffers r in pr.
func (pr *flowPartition) appendRow(r flowRow) {
	b := schemas.FlowBatch{TimeReceived: r.received, Exporter: r.exporter, Type: r.typ, ObservationID: r.obsID}
	pr.cols.add(&b, &r.flow, r.part, r.srcPart, r.srcOff)
}

// hotRecords are n enriched records of per flows each, labelled the way
// enrich labels them, sources 0..n-1 of source partition 0.
func hotRecords(n, per int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		b := schemas.FlowBatch{TimeReceived: 1_800_000_000e9, Exporter: schemas.AddrFromNetip(netip.MustParseAddr("192.0.2.1")),
			Type: schemas.FlowTypeIPFIX, ObservationID: 7}
		for j := 0; j < per; j++ {
			b.Flows = append(b.Flows, schemas.Flow{
				TimeStart: 1_800_000_000e9 - uint64(j)*1e6, TimeEnd: 1_800_000_001e9,
				SrcAddr: schemas.AddrFrom4([4]byte{10, 1, byte(i), byte(j)}), DstAddr: schemas.AddrFromNetip(netip.MustParseAddr("2001:db8::1")),
				Bytes: uint64(1000 + j), Packets: 3, Proto: 6, SrcPort: uint16(40000 + j), DstPort: 443, SamplingRate: 1, InIf: 3, OutIf: 4,
				EtherType: 0x0800, Verdict: schemas.VerdictAllowed, SrcSegment: "corp-users", DstSegment: "dc-web", DstWorkload: "web",
				SrcIdentity: "alice", SrcIdentitySource: "openvpn", Rule: "users-to-web", StagedVerdict: schemas.VerdictAllowed,
				StagedRule: "users-to-web", ServiceSide: schemas.ServiceDst, ServicePort: 443, DstCountry: "DE",
			})
		}
		recs[i] = &kgo.Record{Partition: 0, Offset: int64(i), Value: schemas.AppendFlowBatch(nil, &b),
			Headers: []kgo.RecordHeader{kafka.Source{Partition: 0, Offset: int64(i), Chunks: 1}.Header()}}
	}
	return recs
}

// BenchmarkFlowWriterColumns measures the sink's path from enriched
// records to insert columns (decode, buffer, columns), without the
// network: 100 records of 50 flows per round.
func BenchmarkFlowWriterColumns(b *testing.B) {
	recs := hotRecords(100, 50)
	w := newFlowWriter("enriched", false, func() {})
	b.ReportAllocs()
	rows := 0
	for round := 0; b.Loop(); round++ {
		for _, rec := range recs {
			// Sources move on every round: nothing is skipped.
			rec.Offset = int64(round*len(recs)) + rec.Offset%int64(len(recs))
			rec.Headers[0] = kafka.Source{Partition: 0, Offset: rec.Offset, Chunks: 1}.Header()
			n, err := w.add(rec)
			if err != nil {
				b.Fatal(err)
			}
			rows += n
		}
		if w.ready() != 100*50 {
			b.Fatalf("%d rows ready", w.ready())
		}
		w.clear()
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "flows/s")
}

// TestColumnsAll: all names every column slice once, in flowColumns'
// order, so filter and dropFront move every column together.
func TestColumnsAll(t *testing.T) {
	var c columns
	slicesIn := 0
	ct := reflect.TypeOf(c)
	for i := 0; i < ct.NumField(); i++ {
		if f := ct.Field(i); f.Type.Kind() == reflect.Slice {
			slicesIn++
		}
	}
	if got := len(c.all()); got != slicesIn || got != len(flowColumns) {
		t.Fatalf("all() lists %d columns; the struct has %d, flowColumns %d", got, slicesIn, len(flowColumns))
	}
	b := schemas.FlowBatch{TimeReceived: 5e9}
	for i := 0; i < 4; i++ {
		c.add(&b, &schemas.Flow{Bytes: uint64(i), SrcSegment: "s"}, 0, 1, int64(i))
	}
	for i, col := range c.all() {
		if n := reflect.ValueOf(col).Elem().Len(); n != 4 {
			t.Errorf("column %s: %d rows, want 4", flowColumns[i], n)
		}
	}
	c.filter(1, func(i int) bool { return i != 2 })
	if diff := cmp.Diff(c.bytes, []uint64{0, 1, 3}); diff != "" {
		t.Errorf("after filter (-got +want):\n%s", diff)
	}
	c.dropFront(2)
	for i, col := range c.all() {
		if n := reflect.ValueOf(col).Elem().Len(); n != 1 {
			t.Errorf("column %s: %d rows after dropFront, want 1", flowColumns[i], n)
		}
	}
	if c.bytes[0] != 3 || c.srcOff[0] != 3 || c.srcSeg[0] != "s" {
		t.Errorf("row left: bytes %d srcOff %d segment %q, want 3, 3, s", c.bytes[0], c.srcOff[0], c.srcSeg[0])
	}
}

// TestColumnsDateByFlowTime: time_start is schemas.FlowBatch.FlowTime
// (start, else end, else arrival) and time_end FlowSpan's end, whatever
// the flow's time fields say.
func TestColumnsDateByFlowTime(t *testing.T) {
	b := schemas.FlowBatch{TimeReceived: 1_800_000_100e9}
	for _, modern := range []bool{false, true} {
		c := columns{modern: modern}
		flows := []schemas.Flow{
			{TimeStart: 1_800_000_000e9, TimeEnd: 1_800_000_050e9},
			{TimeEnd: 1_800_000_050e9},               // no start: dated by its end, not its arrival
			{},                                       // no times: by arrival
			{TimeStart: 1_800_000_060e9, TimeEnd: 1}, // end before start: end is start
		}
		unit := uint64(1e9)
		if modern {
			unit = 1e6
		}
		for i := range flows {
			c.add(&b, &flows[i], 0, 0, 0)
			start, end := schemas.FlowSpan(&flows[i], b.TimeReceived)
			if start != b.FlowTime(&flows[i]) {
				t.Fatalf("flow %d: FlowSpan and FlowTime disagree", i)
			}
			if c.timeStart[i] != int64(start/unit) || c.timeEnd[i] != int64(end/unit) {
				t.Errorf("modern %v flow %d: time_start %d time_end %d, want %d %d", modern, i, c.timeStart[i], c.timeEnd[i], start/unit, end/unit)
			}
		}
		if c.timeStart[1] != int64(1_800_000_050e9/unit) {
			t.Errorf("modern %v: a flow with only an end time is dated %d, want its end", modern, c.timeStart[1])
		}
	}
}
