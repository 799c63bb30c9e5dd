// Package audit benchmarks the audit layer against the DESIGN.md targets:
// `audit simulate` over 30 days at 1M flows/day in at most 30 s,
// `audit recommend` over 7 days in at most 10 s, and a compliance report
// (evidence pack) over 30 days in at most 60 s, on a real ClickHouse
// filled directly with INSERT ... SELECT FROM numbers() (no pipeline).
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/audit
//
// The data: 5,000 clients in web, app and external address space, each
// talking to 3 of 400 servers in app, db and dns on the server's service
// port from an ephemeral port, a fifth of the flows being the servers'
// replies; 70 % of the clients carry one of 200 identities.
package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/report"
	"github.com/flowaudit/flowaudit/sink"
)

const (
	benchDays       = 30
	benchFlowsDaily = 1_000_000
)

const benchPolicy = `
segments:
  - name: web
    cidrs: [10.1.0.0/16]
  - name: app
    cidrs: [10.3.0.0/16]
  - name: db
    cidrs: [10.2.0.0/16]
    tags: [pci-cde]
  - name: dns
    cidrs: [10.4.0.0/16]
inventory:
  - cidr: 10.3.0.0/16
    workload: app-tier
    service_account: svc-app
rules:
  - name: web-to-app
    from: [web]
    to: [app]
    ports: ["8080/tcp"]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: ["5432/tcp"]
  - name: any-to-dns
    from: [web, app, external]
    to: [dns]
    ports: ["53/udp"]
  - name: internet-to-web
    from: [external]
    to: [web]
    ports: ["443/tcp"]
`

// fill inserts benchDays days of benchFlowsDaily flows ending at end, one
// day per statement.
func fill(b *testing.B, ch *testutil.ClickHouseServer, end time.Time) {
	conn := ch.Conn(b)
	ctx := context.Background()
	if _, err := sink.Migrate(ctx, conn, "flowaudit", 0, nil); err != nil {
		b.Fatal(err)
	}
	start := end.Add(-benchDays * 24 * time.Hour).Unix()
	step := float64(24*3600) / benchFlowsDaily
	t0 := time.Now()
	const chunk = benchFlowsDaily / 4
	for d := 0; d < benchDays*4; d++ {
		// client c in 0..4999: 10.1.c (web) for c < 2000, 10.3.c (app) for
		// c < 4000, else 198.51.c (external); server s in 0..399, tier s%4:
		// 0 app 8080/tcp, 1 db 5432/tcp, 2 dns 53/udp, 3 web 443/tcp.
		q := fmt.Sprintf(`INSERT INTO flowaudit.flows (time_received, time_start, time_end, src_addr, dst_addr, src_port, dst_port, proto, bytes, packets, src_identity, dst_identity, verdict, rule, src_segment, dst_segment)
SELECT t, t, t,
    if(rep, srv_addr, cli_addr), if(rep, cli_addr, srv_addr),
    if(rep, svc, eph), if(rep, eph, svc), proto, bytes, 3,
    if(rep, '', ident), if(rep, ident, ''), 'allowed', 'bench',
    if(rep, srv_seg, cli_seg), if(rep, cli_seg, srv_seg)
FROM
(
    SELECT toDateTime(%d + toUInt32((number + %d) * %f)) AS t,
        intHash32(number) %% 5000 AS c,
        (c * 3 + intHash32(number * 7) %% 3) %% 400 AS s,
        s %% 4 AS tier,
        intHash32(number * 13) %% 5 = 0 AS rep,
        toUInt16(32768 + intHash32(number * 17) %% 28000) AS eph,
        toUInt16(multiIf(tier = 0, 8080, tier = 1, 5432, tier = 2, 53, 443)) AS svc,
        toUInt8(if(tier = 2, 17, 6)) AS proto,
        toFixedString(unhex(concat('00000000000000000000FFFF', hex(toUInt32(multiIf(c < 2000, 167837696, c < 4000, 167968768, 3325256704) + c)))), 16) AS cli_addr,
        toFixedString(unhex(concat('00000000000000000000FFFF', hex(toUInt32(multiIf(tier = 0, 167968768, tier = 1, 167903232, tier = 2, 168034304, 167837696) + 10000 + s)))), 16) AS srv_addr,
        if(c %% 10 < 7, concat('user', toString(c %% 200)), '') AS ident,
        multiIf(c < 2000, 'web', c < 4000, 'app', 'external') AS cli_seg,
        multiIf(tier = 0, 'app', tier = 1, 'db', tier = 2, 'dns', 'web') AS srv_seg,
        toUInt64(100 + number %% 1400) AS bytes
    FROM numbers(%d)
)`, start, d*chunk, step, chunk)
		if err := conn.Exec(ctx, q); err != nil {
			b.Fatalf("fill day %d: %v", d, err)
		}
	}
	b.Logf("filled %d flows in %s", benchDays*benchFlowsDaily, time.Since(t0).Round(time.Second))
}

func BenchmarkAudit(b *testing.B) {
	ch := testutil.StartClickHouse(b)
	end := time.Now().Truncate(time.Hour)
	fill(b, ch, end)
	p, err := policy.Parse([]byte(benchPolicy), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		b.Fatal(err)
	}
	// The draft drops app-to-db.
	dp := *p
	dp.Rules = append([]policy.Rule{}, p.Rules[0], p.Rules[2], p.Rules[3])
	draft, err := policy.Compile(&dp)
	if err != nil {
		b.Fatal(err)
	}
	r := query.New(ch.Conn(b), "flowaudit")
	ctx := context.Background()

	b.Run("simulate_30d", func(b *testing.B) {
		w := query.Window{From: end.Add(-benchDays * 24 * time.Hour), To: end}
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			groups, err := r.ReplayGroups(ctx, w, audit.PortBounds(&dp))
			if err != nil {
				b.Fatal(err)
			}
			tq := time.Since(t0)
			sim, err := audit.Simulate(groups, draft, audit.SimulateOptions{Window: w})
			if err != nil {
				b.Fatal(err)
			}
			s := sim.Summary
			b.ReportMetric(time.Since(t0).Seconds(), "s/run")
			b.ReportMetric(tq.Seconds(), "s/query")
			b.ReportMetric(float64(len(groups)), "groups")
			b.Logf("simulate 30 days: %d groups, query %s, total %s; newly blocked %d, unchanged %d of %d flows",
				len(groups), tq.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), s.NewlyBlocked, s.Unchanged,
				s.NewlyBlocked+s.NewlyAllowed+s.Unchanged+s.Uncertain)
		}
	})
	// A full compliance evidence pack (queries, checks, HTML, PDF, CSV,
	// manifest) over the 30 days: on whole hours (read from rule_hits_1h)
	// and on a window that is not (read from flows).
	polPath := filepath.Join(b.TempDir(), "bench-policy.yaml")
	if err := os.WriteFile(polPath, []byte(benchPolicy), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, rc := range []struct {
		name string
		w    query.Window
	}{
		{"report_30d_rollup", query.Window{From: end.Add(-benchDays * 24 * time.Hour), To: end}},
		{"report_30d_flows", query.Window{From: end.Add(-benchDays*24*time.Hour + time.Second), To: end.Add(time.Second)}},
	} {
		b.Run(rc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				p, err := report.Generate(ctx, r, report.Request{Framework: report.PCIDSS4, Window: rc.w, PolicyFile: polPath})
				if err != nil {
					b.Fatal(err)
				}
				tq := time.Since(t0)
				if _, err := report.Write(filepath.Join(b.TempDir(), "pack"), p, nil); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(t0).Seconds(), "s/run")
				b.ReportMetric(tq.Seconds(), "s/query")
				b.Logf("report 30 days (%s): %d flows, %d into the CDE, query+checks %s, total with html/pdf/csv/manifest %s", rc.name,
					p.Report.Summary.Flows, p.Report.Summary.FlowsIntoCDE, tq.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
			}
		})
	}
	b.Run("recommend_7d", func(b *testing.B) {
		w := query.Window{From: end.Add(-7 * 24 * time.Hour), To: end}
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			edges, err := r.ServiceEdges(ctx, w)
			if err != nil {
				b.Fatal(err)
			}
			alerts, err := r.Alerts(ctx, w, audit.DefaultHoldKinds)
			if err != nil {
				b.Fatal(err)
			}
			tq := time.Since(t0)
			rec := audit.Recommend(edges, alerts, m, audit.DefaultRecommendOptions(w))
			b.ReportMetric(time.Since(t0).Seconds(), "s/run")
			b.ReportMetric(tq.Seconds(), "s/query")
			b.ReportMetric(float64(len(edges)), "edges")
			b.Logf("recommend 7 days: %d edges, %d rules, query %s, total %s", len(edges), len(rec.Rules),
				tq.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
		}
	})
}
