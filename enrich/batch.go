package enrich

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/schemas"
)

// batcher labels the flows of one input record in place and encodes
// them straight from the input batch into the enriched records, one or
// more per partition of the enriched topic: no flow is copied. It is
// owned by the flow loop. The records it returns, their keys and values
// are its own, reused after release.
type batcher struct {
	enricher   *Enricher
	geo        *GeoDB // nil without GeoIP databases
	topic      string
	partitions int32
	verdicts   [4]prometheus.Counter
	attributed prometheus.Counter

	res      [enrichGroup]Result
	sel      [][]int32 // per partition: indexes of its flows
	chunkBuf []byte
	chunks   []*kgo.Record
	// arena holds the keys and values of the records handed out since
	// release; used are those records, free the ones to reuse.
	arena      []byte
	used, free []*kgo.Record
}

// newBatcher counts flows per verdict in flows and those with a source
// identity in attributed.
func newBatcher(e *Enricher, geo *GeoDB, topic string, partitions int32, flows *prometheus.CounterVec, attributed prometheus.Counter) *batcher {
	b := &batcher{enricher: e, geo: geo, topic: topic, partitions: partitions, attributed: attributed,
		sel: make([][]int32, partitions)}
	for v := range b.verdicts {
		b.verdicts[v] = flows.WithLabelValues(schemas.Verdict(v).String())
	}
	return b
}

// records labels in, read from input record (partition, offset), and
// returns the enriched records to produce, with their source headers.
func (bt *batcher) records(in *schemas.FlowBatch, partition int32, offset int64) []*kgo.Record {
	for p := range bt.sel {
		bt.sel[p] = bt.sel[p][:0]
	}
	for i := range in.Flows {
		f := &in.Flows[i]
		if i%enrichGroup == 0 {
			bt.enricher.EnrichFlows(in, in.Flows[i:min(i+enrichGroup, len(in.Flows))], bt.res[:])
		}
		res := &bt.res[i%enrichGroup]
		f.SrcSegment, f.DstSegment = res.SrcSegment, res.DstSegment
		f.SrcWorkload, f.DstWorkload = res.SrcWorkload, res.DstWorkload
		f.SrcIdentity, f.DstIdentity = res.SrcIdentity, res.DstIdentity
		f.SrcIdentitySource, f.DstIdentitySource = res.SrcIdentitySource, res.DstIdentitySource
		f.SrcDevice, f.DstDevice = res.SrcDevice, res.DstDevice
		f.Verdict, f.Rule = schemas.Verdict(res.Verdict), res.Rule
		f.StagedVerdict, f.StagedRule = schemas.Verdict(res.StagedVerdict), res.StagedRule
		f.ServiceSide, f.ServicePort = res.ServiceSide, res.ServicePort
		if bt.geo != nil {
			addGeo(bt.geo, f)
		}
		if int(f.Verdict) < len(bt.verdicts) {
			bt.verdicts[f.Verdict].Inc()
		}
		if f.SrcIdentity != "" {
			bt.attributed.Inc()
		}
		p := partitionOf(f.SrcAddr, bt.partitions)
		bt.sel[p] = append(bt.sel[p], int32(i))
	}
	all := bt.chunks[:0]
	for p, sel := range bt.sel {
		if len(sel) == 0 {
			continue
		}
		// One input record may fan out to more than the broker takes in
		// one record (labels make flows larger): split.
		first := len(all)
		bt.chunkBuf = schemas.AppendFlowBatchChunksOf(bt.chunkBuf, in, sel, kafka.MaxRecordBytes, func(chunk []byte, sel []int32) {
			rec := bt.record()
			rec.Topic, rec.Partition = bt.topic, int32(p)
			rec.Key, rec.Value = bt.keep(in.Flows[sel[0]].SrcAddr[:]), bt.keep(chunk)
			all = append(all, rec)
		})
		for i, rec := range all[first:] {
			// The source header lets the sink insert each input record
			// once, however often a crash makes us produce it.
			src := kafka.Source{Partition: partition, Offset: offset, Chunk: uint16(i), Chunks: uint16(len(all) - first)}
			rec.Headers = append(rec.Headers, src.Header())
		}
	}
	bt.chunks = all
	return all
}

// record returns a blank record, reused when one was released.
func (bt *batcher) record() *kgo.Record {
	var rec *kgo.Record
	if n := len(bt.free); n > 0 {
		rec = bt.free[n-1]
		bt.free = bt.free[:n-1]
		*rec = kgo.Record{Headers: rec.Headers[:0]}
	} else {
		rec = &kgo.Record{}
	}
	bt.used = append(bt.used, rec)
	return rec
}

// keep copies b into the arena.
func (bt *batcher) keep(b []byte) []byte {
	start := len(bt.arena)
	bt.arena = append(bt.arena, b...)
	return bt.arena[start:len(bt.arena):len(bt.arena)]
}

// release makes every record handed out, and its key and value, free for
// reuse: call it once the client is done with them (after Flush, whose
// promises have all been called).
func (bt *batcher) release() {
	bt.free = append(bt.free, bt.used...)
	clear(bt.used)
	bt.used = bt.used[:0]
	bt.arena = bt.arena[:0]
}

// addGeo sets the flow's countries, and its AS numbers where the exporter
// gave none.
func addGeo(geo *GeoDB, f *schemas.Flow) {
	country, asn, _ := geo.Lookup(f.SrcAddr)
	f.SrcCountry = country
	if f.SrcAS == 0 {
		f.SrcAS = asn
	}
	country, asn, _ = geo.Lookup(f.DstAddr)
	f.DstCountry = country
	if f.DstAS == 0 {
		f.DstAS = asn
	}
}
