package enrich

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/schemas"
)

// batcher labels the flows of one input record and encodes them into the
// enriched records, per partition of the enriched topic. It is owned by
// the flow loop; the records it returns are valid until the next call.
type batcher struct {
	enricher   *Enricher
	geo        *GeoDB // nil without GeoIP databases
	topic      string
	partitions int32
	verdicts   [4]prometheus.Counter
	attributed prometheus.Counter

	res      Result
	out      []schemas.FlowBatch
	chunkBuf []byte
	chunks   []*kgo.Record
}

// newBatcher counts flows per verdict in flows and those with a source
// identity in attributed.
func newBatcher(e *Enricher, geo *GeoDB, topic string, partitions int32, flows *prometheus.CounterVec, attributed prometheus.Counter) *batcher {
	b := &batcher{enricher: e, geo: geo, topic: topic, partitions: partitions, attributed: attributed,
		out: make([]schemas.FlowBatch, partitions)}
	for v := range b.verdicts {
		b.verdicts[v] = flows.WithLabelValues(schemas.Verdict(v).String())
	}
	return b
}

// records labels in, read from input record (partition, offset), and
// returns the enriched records to produce, with their source headers.
func (bt *batcher) records(in *schemas.FlowBatch, partition int32, offset int64) []*kgo.Record {
	out := bt.out
	for i := range out {
		out[i].Flows = out[i].Flows[:0]
	}
	res := &bt.res
	for i := range in.Flows {
		f := &in.Flows[i]
		bt.enricher.EnrichFlow(in, f, res)
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
		out[p].Flows = append(out[p].Flows, *f)
	}
	all := bt.chunks[:0]
	for p := range out {
		if len(out[p].Flows) == 0 {
			continue
		}
		b := &out[p]
		b.TimeReceived, b.Exporter, b.ExporterPort = in.TimeReceived, in.Exporter, in.ExporterPort
		b.Type, b.ObservationID, b.SequenceNumber = in.Type, in.ObservationID, in.SequenceNumber
		// One input record may fan out to more than the broker takes in
		// one record (labels make flows larger): split.
		first := len(all)
		bt.chunkBuf = schemas.AppendFlowBatchChunks(bt.chunkBuf, b, kafka.MaxRecordBytes, func(chunk []byte, flows []schemas.Flow) {
			all = append(all, &kgo.Record{Topic: bt.topic, Partition: int32(p),
				Key: append([]byte(nil), flows[0].SrcAddr[:]...), Value: append([]byte(nil), chunk...)})
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
