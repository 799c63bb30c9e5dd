package decoder

import (
	"testing"

	"github.com/flowaudit/flowaudit/schemas"
)

// The benchmarks decode every datagram of a softflowd run per iteration
// (templates included, as an exporter resends them): 110 flows in 5
// datagrams for v9 and IPFIX (up to 32 flows each), 75 flows in 3 for v5.
// The goflow2 benchmarks run goflow2 v2.2.6's decoder, its protobuf
// producer and the marshalling of each message (its produce path) on the
// same datagrams.

func benchmarkOurs(b *testing.B, datagrams [][]byte, sflow bool) {
	d := New()
	var batch schemas.FlowBatch
	flowsPerOp := 0
	for _, dg := range datagrams {
		var err error
		if sflow {
			err = d.DecodeSFlow(testExporter, 6343, 1, dg, &batch)
		} else {
			err = d.DecodeNetFlow(testExporter, 2055, 1, dg, &batch)
		}
		if err != nil {
			b.Fatal(err)
		}
		flowsPerOp += len(batch.Flows)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, dg := range datagrams {
			if sflow {
				_ = d.DecodeSFlow(testExporter, 6343, 1, dg, &batch)
			} else {
				_ = d.DecodeNetFlow(testExporter, 2055, 1, dg, &batch)
			}
		}
	}
	b.ReportMetric(float64(flowsPerOp)*float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}

func benchmarkGoflow2(b *testing.B, datagrams [][]byte, kind string) {
	ref := newGoflow2Reference(b)
	flowsPerOp := 0
	for _, dg := range datagrams {
		msgs, err := ref.decode(dg, kind, true)
		if err != nil {
			b.Fatal(err)
		}
		flowsPerOp += len(msgs)
		ref.producer.Commit(msgs)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, dg := range datagrams {
			msgs, _ := ref.decode(dg, kind, true)
			ref.producer.Commit(msgs)
		}
	}
	b.ReportMetric(float64(flowsPerOp)*float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}

func BenchmarkDecodeIPFIX(b *testing.B) {
	benchmarkOurs(b, captures(b, "softflowd-ipfix"), false)
}

func BenchmarkDecodeNetFlowV9(b *testing.B) {
	benchmarkOurs(b, captures(b, "softflowd-v9"), false)
}

func BenchmarkDecodeNetFlowV5(b *testing.B) {
	benchmarkOurs(b, captures(b, "softflowd-v5"), false)
}

func BenchmarkDecodeSFlow(b *testing.B) {
	benchmarkOurs(b, [][]byte{sflowDatagram(1, 0, testSFlowSamples(30)...)}, true)
}

func BenchmarkGoflow2IPFIX(b *testing.B) {
	benchmarkGoflow2(b, captures(b, "softflowd-ipfix"), "netflow")
}

func BenchmarkGoflow2NetFlowV9(b *testing.B) {
	benchmarkGoflow2(b, captures(b, "softflowd-v9"), "netflow")
}

func BenchmarkGoflow2NetFlowV5(b *testing.B) {
	benchmarkGoflow2(b, captures(b, "softflowd-v5"), "netflow")
}

func BenchmarkGoflow2SFlow(b *testing.B) {
	benchmarkGoflow2(b, [][]byte{sflowDatagram(1, 0, testSFlowSamples(30)...)}, "sflow")
}
