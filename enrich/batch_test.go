package enrich

import (
	"hash/fnv"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/policy/policytest"
	"github.com/flowaudit/flowaudit/schemas"
)

func testBatcher(t testing.TB, partitions int32) (*batcher, *policytest.Synthetic) {
	t.Helper()
	syn := policytest.New(policytest.Options{Seed: 1})
	m, err := policy.Compile(syn.Policy)
	if err != nil {
		t.Fatal(err)
	}
	flows := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"verdict"})
	return newBatcher(NewEnricher(m, nil), nil, "enriched", partitions, flows, prometheus.NewCounter(prometheus.CounterOpts{Name: "a"})), syn
}

func randomBatch(syn *policytest.Synthetic, r *rand.Rand, n int) *schemas.FlowBatch {
	b := &schemas.FlowBatch{TimeReceived: 1_800_000_000e9, Exporter: schemas.AddrFrom4([4]byte{192, 0, 2, 1}), ExporterPort: 4739,
		Type: schemas.FlowTypeIPFIX, ObservationID: 9, SequenceNumber: 77}
	for i := 0; i < n; i++ {
		b.Flows = append(b.Flows, schemas.Flow{
			TimeStart: 1_800_000_000e9 - uint64(i)*1e6, SrcAddr: syn.RandomAddr(r, 0.1), DstAddr: syn.RandomAddr(r, 0.1),
			SrcPort: uint16(32768 + r.IntN(20000)), DstPort: 443, Proto: 6, Bytes: uint64(100 + i), Packets: 2, SamplingRate: 1,
		})
	}
	return b
}

// TestBatcherRecords: every flow lands, labelled, in the partition of its
// source address, in input order, each partition's flows as one record
// carrying the input's header and the source header, byte for byte what
// encoding the partition's labelled flows as one batch gives.
func TestBatcherRecords(t *testing.T) {
	bt, syn := testBatcher(t, 4)
	r := rand.New(rand.NewPCG(1, 2))
	in := randomBatch(syn, r, 200)
	want := make([]schemas.FlowBatch, 4)
	for i := range in.Flows {
		f := in.Flows[i]
		var res Result
		bt.enricher.EnrichFlow(in, &f, &res)
		f.SrcSegment, f.DstSegment, f.SrcWorkload, f.DstWorkload = res.SrcSegment, res.DstSegment, res.SrcWorkload, res.DstWorkload
		f.Verdict, f.Rule, f.StagedVerdict, f.StagedRule = schemas.Verdict(res.Verdict), res.Rule, schemas.Verdict(res.StagedVerdict), res.StagedRule
		f.ServiceSide, f.ServicePort = res.ServiceSide, res.ServicePort
		f.SrcIdentity, f.DstIdentity, f.SrcIdentitySource, f.DstIdentitySource = res.SrcIdentity, res.DstIdentity, res.SrcIdentitySource, res.DstIdentitySource
		f.SrcDevice, f.DstDevice = res.SrcDevice, res.DstDevice
		p := partitionOf(f.SrcAddr, 4)
		want[p].Flows = append(want[p].Flows, f)
	}
	// A first round, released: the second reuses its records and arena.
	in1 := *in
	in1.Flows = append([]schemas.Flow(nil), in.Flows[:150]...)
	bt.records(&in1, 3, 40)
	bt.release()
	in2 := *in
	in2.Flows = append([]schemas.Flow(nil), in.Flows...)
	got := append([]*kgo.Record(nil), bt.records(&in2, 3, 41)...)
	i := 0
	for p := range want {
		if len(want[p].Flows) == 0 {
			continue
		}
		if i >= len(got) {
			t.Fatalf("%d records, want more", len(got))
		}
		rec := got[i]
		i++
		w := want[p]
		w.TimeReceived, w.Exporter, w.ExporterPort, w.Type, w.ObservationID, w.SequenceNumber =
			in.TimeReceived, in.Exporter, in.ExporterPort, in.Type, in.ObservationID, in.SequenceNumber
		if rec.Partition != int32(p) || rec.Topic != "enriched" {
			t.Errorf("record %d: topic %s partition %d, want enriched %d", i, rec.Topic, rec.Partition, p)
		}
		if diff := cmp.Diff(rec.Value, schemas.AppendFlowBatch(nil, &w)); diff != "" {
			t.Errorf("partition %d value (-got +want):\n%s", p, diff)
		}
		if diff := cmp.Diff(rec.Key, w.Flows[0].SrcAddr[:]); diff != "" {
			t.Errorf("partition %d key (-got +want):\n%s", p, diff)
		}
		src, ok, err := kafka.RecordSource(rec)
		if err != nil || !ok || src != (kafka.Source{Partition: 3, Offset: 41, Chunk: 0, Chunks: 1}) {
			t.Errorf("partition %d source %+v %v %v", p, src, ok, err)
		}
	}
	if i != len(got) {
		t.Errorf("%d records, want %d", len(got), i)
	}
}

// BenchmarkBatcher measures enrich's per-record path: decode an input
// record of 30 flows, label them, encode the enriched records for 8
// partitions.
func BenchmarkBatcher(b *testing.B) {
	bt, syn := testBatcher(b, 8)
	r := rand.New(rand.NewPCG(1, 2))
	var values [][]byte
	for i := 0; i < 64; i++ {
		values = append(values, schemas.AppendFlowBatch(nil, randomBatch(syn, r, 30)))
	}
	var (
		in  schemas.FlowBatch
		dec schemas.FlowDecoder
	)
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		if err := dec.Unmarshal(values[i%len(values)], &in); err != nil {
			b.Fatal(err)
		}
		bt.records(&in, 0, int64(i))
		n += len(in.Flows)
		if i%100 == 99 {
			bt.release() // as after a poll's Flush
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
}

// TestPartitionOf: FNV-1a as hash/fnv computes it, so flows keep their
// partitions across versions.
func TestPartitionOf(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1000; i++ {
		var a schemas.Addr
		for j := range a {
			a[j] = byte(r.IntN(256))
		}
		h := fnv.New32a()
		h.Write(a[:])
		n := int32(1 + r.IntN(64))
		if got, want := partitionOf(a, n), int(h.Sum32()%uint32(n)); got != want {
			t.Fatalf("partitionOf(%v, %d) = %d, want %d", a, n, got, want)
		}
	}
}
