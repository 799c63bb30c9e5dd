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
