package engine

import (
	"os"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// BenchmarkEngine: every detector enabled, simulator traffic enriched with
// deploy/policy.yaml (which makes some of it violations and unattributed
// access), Advance once per simulated second as the stage does.
func BenchmarkEngine(b *testing.B) {
	src, err := os.ReadFile("../../deploy/policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	m := testMatcher(b, string(src))
	const perSecond = 2000
	flows, _ := workload(b, m, 2, perSecond) // 240k flows over 2 minutes
	span := flows[len(flows)-1].TimeEnd - t0 + uint64(time.Second)
	var alerts, keyed int
	e := New(DefaultConfiguration(), m, func(*schemas.Alert) { alerts++ }, func(*Keyed) { keyed++ })
	var f schemas.Flow
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(flows)
		f = flows[j]
		shift := uint64(i/len(flows)) * span
		f.TimeStart += shift
		f.TimeEnd += shift
		e.ObserveFlow(nil, &f)
		if j%perSecond == perSecond-1 {
			e.Advance(f.TimeEnd)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(keyed)/float64(b.N), "keyed/flow")
}
