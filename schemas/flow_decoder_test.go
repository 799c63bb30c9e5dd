package schemas

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFlowDecoder: a decoder gives what UnmarshalFlowBatch gives, batch
// after batch, past its cache's bound too.
func TestFlowDecoder(t *testing.T) {
	var d FlowDecoder
	var got, want FlowBatch
	for round := 0; round < 3; round++ {
		b := testBatch()
		b.Flows = nil
		for i := 0; i < flowDecoderLabels+500; i += 97 {
			b.Flows = append(b.Flows, Flow{Bytes: uint64(i), SrcSegment: "seg", DstSegment: fmt.Sprintf("dst-%d", i%300),
				SrcIdentity: fmt.Sprintf("user-%d-%d", round, i), Rule: "r", StagedRule: "r", DstDevice: "aa:bb"})
		}
		for i := 0; i < 200; i++ {
			b.Flows = append(b.Flows, Flow{SrcIdentity: fmt.Sprintf("bulk-%d-%d", round, i*1000)})
		}
		data := AppendFlowBatch(nil, b)
		if err := d.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		if err := UnmarshalFlowBatch(data, &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(&got, &want); diff != "" {
			t.Fatalf("round %d (-decoder +UnmarshalFlowBatch):\n%s", round, diff)
		}
	}
	if len(d.labels) > flowDecoderLabels {
		t.Errorf("cache holds %d labels, bound %d", len(d.labels), flowDecoderLabels)
	}
	if err := d.Unmarshal([]byte{0x3a, 0x05, 0xaa}, &got); err == nil {
		t.Error("truncated payload decoded")
	}
}

func BenchmarkFlowDecoder(b *testing.B) {
	in := testBatch()
	in.Flows = make([]Flow, 30)
	for i := range in.Flows {
		in.Flows[i] = testBatch().Flows[0]
	}
	buf := AppendFlowBatch(nil, in)
	var d FlowDecoder
	var out FlowBatch
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Unmarshal(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(in.Flows))/b.Elapsed().Seconds(), "flows/s")
}
