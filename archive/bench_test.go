package archive

import (
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/schemas"
)

// BenchmarkArchiveFlows measures the archive's own cost per flow: decode
// an enriched record of 30 flows, append it to the column buffers, and
// write and fsync a zstd Parquet file every 300,000 flows (no Kafka).
// The flows vary as a network's do (addresses, ports, counters, labels),
// so bytes/flow is what a real archive takes.
func BenchmarkArchiveFlows(b *testing.B) {
	cfg := DefaultConfiguration()
	cfg.Dir = b.TempDir()
	cfg.MaxRows = 300_000
	c, err := New(nil, cfg, kafka.DefaultConfiguration())
	if err != nil {
		b.Fatal(err)
	}
	recs := benchRecords(c.flowsTopic)
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := recs[i%len(recs)]
		rec.Offset = int64(i)
		c.add(rec)
	}
	for key, st := range c.parts {
		c.finish(c.ctx, key, st, false)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*30)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(c.Files()), "files")
	b.ReportMetric(float64(dirBytes(b, cfg.Dir))/float64(b.N*30), "bytes/flow")
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

// dirBytes is the size of the files under dir.
func dirBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// benchRecords returns 8,192 enriched records of 30 flows each, all in
// one hour: clients of a /16 talking to 50 servers on a dozen services,
// with random counters and a few hundred identities.
func benchRecords(topic string) []*kgo.Record {
	rng := rand.New(rand.NewPCG(1, 2))
	segments := []string{"web", "app", "db", "corp", "pci", "mgmt", "k8s", "dmz"}
	ports := []uint16{22, 53, 80, 443, 3306, 5432, 6379, 8080, 8443, 9000, 9092, 25}
	verdicts := []schemas.Verdict{schemas.VerdictAllowed, schemas.VerdictAllowed, schemas.VerdictAllowed, schemas.VerdictViolation}
	recs := make([]*kgo.Record, 8192)
	for i := range recs {
		t := uint64(base.UnixNano()) + uint64(i)*uint64(400*time.Millisecond)
		batch := schemas.FlowBatch{TimeReceived: t, Type: schemas.FlowTypeIPFIX, Exporter: schemas.AddrFrom4([4]byte{192, 0, 2, byte(i % 4)})}
		for j := 0; j < 30; j++ {
			srv := rng.IntN(50)
			port := ports[srv%len(ports)]
			src, dst := segments[rng.IntN(len(segments))], segments[srv%len(segments)]
			start := t - uint64(rng.IntN(60_000))*uint64(time.Millisecond)
			batch.Flows = append(batch.Flows, schemas.Flow{
				SrcAddr: schemas.AddrFrom4([4]byte{10, 1, byte(rng.IntN(256)), byte(rng.IntN(256))}),
				DstAddr: schemas.AddrFrom4([4]byte{10, 2, 0, byte(srv)}), SrcPort: uint16(32768 + rng.IntN(28232)), DstPort: port, Proto: 6,
				Bytes: uint64(40 + rng.IntN(1_000_000)), Packets: uint64(1 + rng.IntN(800)), TCPFlags: 0x1b,
				TimeStart: start, TimeEnd: start + uint64(rng.IntN(30_000))*uint64(time.Millisecond),
				InIf: uint32(rng.IntN(48)), OutIf: uint32(rng.IntN(48)),
				SrcSegment: src, DstSegment: dst, SrcWorkload: src + "-" + strconv.Itoa(rng.IntN(20)), DstWorkload: dst + "-" + strconv.Itoa(srv),
				Verdict: verdicts[rng.IntN(len(verdicts))], Rule: src + "-to-" + dst,
				SrcIdentity: "user" + strconv.Itoa(rng.IntN(300)), SrcIdentitySource: "sshd",
				ServiceSide: schemas.ServiceDst, ServicePort: port})
		}
		recs[i] = &kgo.Record{Topic: topic, Value: schemas.AppendFlowBatch(nil, &batch)}
	}
	return recs
}
