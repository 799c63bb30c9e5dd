package archive

import (
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/schemas"
)

// BenchmarkArchiveFlows measures the archive's own cost per flow: decode
// an enriched record of 30 flows, append it to the Arrow builders, and
// write and fsync a zstd Parquet file every 300,000 flows (no Kafka).
func BenchmarkArchiveFlows(b *testing.B) {
	cfg := DefaultConfiguration()
	cfg.Dir = b.TempDir()
	cfg.MaxRows = 300_000
	c, err := New(nil, cfg, kafka.DefaultConfiguration())
	if err != nil {
		b.Fatal(err)
	}
	batch := schemas.FlowBatch{TimeReceived: uint64(base.UnixNano()), Type: schemas.FlowTypeIPFIX}
	for j := 0; j < 30; j++ {
		batch.Flows = append(batch.Flows, schemas.Flow{SrcAddr: schemas.AddrFrom4([4]byte{10, 1, 0, byte(j)}),
			DstAddr: schemas.AddrFrom4([4]byte{10, 2, 0, 10}), SrcPort: uint16(40000 + j), DstPort: 5432, Proto: 6,
			Bytes: uint64(1000 + j), Packets: 3, SrcSegment: "web", DstSegment: "db", Verdict: schemas.VerdictAllowed,
			Rule: "web-to-db", SrcIdentity: "alice", ServiceSide: schemas.ServiceDst, ServicePort: 5432})
	}
	value := schemas.AppendFlowBatch(nil, &batch)
	rec := &kgo.Record{Topic: c.flowsTopic, Value: value}
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec.Offset = int64(i)
		c.add(rec)
	}
	for key, st := range c.parts {
		c.finish(c.ctx, key, st, false)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*30)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(c.Files()), "files")
	// On a shared machine wall time says little: flows per CPU second is
	// the archive's cost.
	b.ReportMetric(float64(b.N*30)/(cpuTime()-cpu0).Seconds(), "flows/cpu-s")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
