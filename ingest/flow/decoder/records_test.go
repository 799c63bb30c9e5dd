package decoder

import (
	"testing"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/schemas"
)

// TestRecordsCountOptionsData checks that Records counts IPFIX options
// data records like flow records, as the IPFIX sequence number does, so an
// exporter that resends sampling options is not reported as losing flows.
func TestRecordsCountOptionsData(t *testing.T) {
	enc := simulate.NewEncoder(simulate.ProtocolIPFIX, simulate.EncoderOptions{SamplingRate: 100, TemplateEvery: 5})
	gen := simulate.NewGenerator(3)
	d := New()
	tr := NewSequenceTracker()
	flows := make([]schemas.Flow, 20)
	var b schemas.FlowBatch
	var lostD, lostF uint64
	for i := 0; i < 50; i++ {
		for j := range flows {
			gen.Next(&flows[j])
		}
		if err := d.DecodeNetFlow(testExporter, 4739, 1, enc.Encode(nil, flows), &b); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		want := uint32(20)
		if i%5 == 0 {
			want = 21 // one sampling options data record rides along
		}
		if b.Records != want || len(b.Flows) != 20 {
			t.Fatalf("datagram %d: Records = %d, flows = %d; want %d, 20", i, b.Records, len(b.Flows), want)
		}
		ld, lf := tr.Observe(&b, int(b.Records))
		lostD += ld
		lostF += lf
	}
	if lostD != 0 || lostF != 0 {
		t.Errorf("lost datagrams, flows = %d, %d; want 0, 0", lostD, lostF)
	}
}

// TestSequenceConventions feeds the tracker IPFIX streams numbered by the
// three conventions seen in the wild; none is loss, a real gap still is.
func TestSequenceConventions(t *testing.T) {
	batch := func(seq uint32, flows, records int) *schemas.FlowBatch {
		return &schemas.FlowBatch{Type: schemas.FlowTypeIPFIX, Exporter: testExporter, SequenceNumber: seq,
			Records: uint32(records), Flows: make([]schemas.Flow, flows)}
	}
	for _, tc := range []struct {
		name string
		seqs []uint32 // sequence numbers of datagrams of 10 flows + 1 options record each
	}{
		{"rfc7011 counts options records", []uint32{0, 11, 22, 33}},
		{"flows only", []uint32{0, 10, 20, 30}},
		{"softflowd counts after the message", []uint32{10, 20, 30, 40}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewSequenceTracker()
			for _, s := range tc.seqs {
				if d, f := tr.Observe(batch(s, 10, 11), 11); d != 0 || f != 0 {
					t.Fatalf("seq %d: lost %d datagrams, %d flows; want none", s, d, f)
				}
			}
			last := tc.seqs[len(tc.seqs)-1]
			if d, f := tr.Observe(batch(last+55, 10, 11), 11); d == 0 || f == 0 {
				t.Errorf("a gap of 44 records after seq %d was not reported (lost %d, %d)", last, d, f)
			}
		})
	}
}
