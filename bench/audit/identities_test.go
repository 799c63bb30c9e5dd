package audit

import (
	"context"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

// The identities benchmark: `audit identities` over the gaps benchmark's
// data (90 days of audit_edges_1d, 20,000 service edges a day, every 7th
// with a user identity, 200 segments with service accounts in the
// inventory, 1,000 rules):
//
//	go test -run '^$' -bench Identities -benchtime 1x ./bench/audit
func BenchmarkIdentities(b *testing.B) {
	p, err := policy.Parse([]byte(gapsPolicy()), "gaps-bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		b.Fatal(err)
	}
	ch := testutil.StartClickHouse(b)
	end := time.Now().UTC().Truncate(24 * time.Hour)
	fillGaps(b, ch, end)
	r := query.New(ch.Conn(b), "flowaudit")
	ctx := context.Background()
	w := query.Window{From: end.Add(-gapsDays * 24 * time.Hour), To: end}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		edges, err := r.IdentityEdges(ctx, w)
		if err != nil {
			b.Fatal(err)
		}
		sessions, err := r.AccessSessions(ctx, w)
		if err != nil {
			b.Fatal(err)
		}
		tq := time.Since(t0)
		rev := audit.ReviewIdentities(edges, sessions, m, audit.IdentityOptions{Window: w})
		total := time.Since(t0)
		b.ReportMetric(total.Seconds(), "s/run")
		b.ReportMetric(tq.Seconds(), "s/query")
		b.ReportMetric(float64(len(edges)), "edges")
		b.Logf("identities over %d days, %d rules, %d segments: %d identity edges; query %s, review %s, total %s; %d identities, %d rows, %d dormant",
			gapsDays, len(p.Rules), len(p.Segments), len(edges), tq.Round(time.Millisecond), (total - tq).Round(time.Millisecond),
			total.Round(time.Millisecond), rev.Summary.Identities, rev.Summary.Rows, rev.Summary.Dormant)
	}
}
