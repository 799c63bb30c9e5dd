package audit

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/sink"
)

// The gaps benchmark: `audit gaps` over 90 days of rollups (audit_edges_1d
// and rule_hits_1h filled directly, 20,000 service edges a day) and a
// policy of 200 segments and 1,000 rules, against the target of at most
// 10 s (issue 18).
//
//	go test -run '^$' -bench Gaps -benchtime 1x ./bench/audit
const (
	gapsDays     = 90
	gapsSegments = 200
	gapsRules    = 1000
	gapsEdges    = 20_000 // distinct service edges per day
)

// gapsPolicy is 200 segments 10.S.0.0/16 (every 20th sensitive, every
// 50th low-trust, env prod or dev by halves), an inventory of 400 labelled
// hosts and 1,000 rules: segment pairs on single ports, ranges, identity
// scoped, selector and deny rules, some shadowed and some redundant.
func gapsPolicy() string {
	var b strings.Builder
	b.WriteString("segments:\n")
	for s := 0; s < gapsSegments; s++ {
		tags := []string{"env:prod"}
		if s >= gapsSegments/2 {
			tags[0] = "env:dev"
		}
		if s%20 == 5 {
			tags = append(tags, "sensitive")
		}
		if s%50 == 7 {
			tags = append(tags, "low-trust")
		}
		fmt.Fprintf(&b, "  - {name: s%03d, cidrs: [10.%d.0.0/16], tags: [%s]}\n", s, s, strings.Join(tags, ", "))
	}
	b.WriteString("inventory:\n")
	for h := 0; h < 400; h++ {
		fmt.Fprintf(&b, "  - {cidr: 10.%d.0.%d/32, workload: w%d, service_account: sa%d, labels: {app: a%d}}\n", h%gapsSegments, 1+h/gapsSegments, h, h%40, h%25)
	}
	b.WriteString("rules:\n")
	for r := 0; r < gapsRules; r++ {
		from, to := r%gapsSegments, (r*7+3+r/gapsSegments)%gapsSegments
		port := fmt.Sprintf("%d/tcp", 8000+r%50)
		extra := ""
		switch r % 10 {
		case 1:
			port = fmt.Sprintf("%d-%d/tcp", 9000+r%20, 9100+r%20)
		case 2:
			extra = fmt.Sprintf(", identities: [user%d, sa%d]", r%30, r%40)
		case 3:
			extra = ", action: deny"
		case 4:
			fmt.Fprintf(&b, "  - {name: r%04d, from: [{labels: {app: a%d}}], to: [s%03d], ports: [%q], justification: j, review_by: 2099-01-01}\n", r, r%25, to, port)
			continue
		case 5:
			port = "53/udp"
		}
		fmt.Fprintf(&b, "  - {name: r%04d, from: [s%03d, s%03d], to: [s%03d], ports: [%q]%s, justification: j, review_by: 2099-01-01}\n",
			r, from, (from+1)%gapsSegments, to, port, extra)
	}
	return b.String()
}

func fillGaps(b *testing.B, ch *testutil.ClickHouseServer, end time.Time) {
	conn := ch.Conn(b)
	ctx := context.Background()
	if _, err := sink.Migrate(ctx, conn, "flowaudit", 0, nil); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	endDay := end.Truncate(24 * time.Hour)
	// Edge n: client host n%10+1 of segment n/10%200, server host 1 of the
	// segment (cs*7+3 + n/2000%3)%200, port 8000 + n%60.
	edge := `toUInt32(number %% %d) AS n, intDiv(n, 10) %% 200 AS cs, (cs * 7 + 3 + intDiv(n, 2000) %% 3) %% 200 AS ss,
        toFixedString(unhex(concat('00000000000000000000FFFF', hex(toUInt32(167772160 + cs * 65536 + n %% 10 + 1)))), 16) AS c_addr,
        toFixedString(unhex(concat('00000000000000000000FFFF', hex(toUInt32(167772160 + ss * 65536 + 1)))), 16) AS s_addr,
        toUInt16(8000 + n %% 60) AS port, if(n %% 7 = 0, concat('user', toString(n %% 30)), '') AS ident`
	q := fmt.Sprintf(`INSERT INTO flowaudit.audit_edges_1d
SELECT day, c_addr, s_addr, toUInt16(32768), port, toUInt8(6), 'dst', ident, '', 'allowed', 'bench',
    countState(), sumState(toUInt64(1000)), minState(t), maxState(t)
FROM
(
    SELECT toDate(toDateTime(%d) - intDiv(number, %d) * 86400) AS day,
        CAST(toDateTime(%d) - intDiv(number, %d) * 86400 + 3600 AS DateTime) AS t, `+edge+`
    FROM numbers(%d)
)
GROUP BY day, c_addr, s_addr, port, ident, t`, endDay.Unix(), gapsEdges, endDay.Unix(), gapsEdges, gapsEdges, gapsDays*gapsEdges)
	if err := conn.Exec(ctx, q); err != nil {
		b.Fatalf("fill audit_edges_1d: %v", err)
	}
	// rule_hits_1h: violations on 500 segment pairs, one row per pair and
	// hour for 90 days.
	for d := 0; d < gapsDays; d += 10 {
		q = fmt.Sprintf(`INSERT INTO flowaudit.rule_hits_1h (hour, rule, verdict, staged_rule, staged_verdict, client_segment, server_segment,
    client_workload, server_workload, client_identity, service_port, proto, service_side, flows, bytes, last_hit)
SELECT hour, '', 'violation', '', 'violation', concat('s', substring(toString(1000 + p %% 200), 2)), concat('s', substring(toString(1000 + (p * 3) %% 200), 2)),
    '', '', '', toUInt16(3306), toUInt8(6), 'dst', toUInt64(3), toUInt64(300), maxState(hour)
FROM
(
    SELECT CAST(toDateTime(%d - intDiv(number, 500) * 3600) AS DateTime) AS hour, number %% 500 AS p FROM numbers(%d)
)
GROUP BY hour, p`, endDay.Unix()-int64(d)*86400, 500*24*10)
		if err := conn.Exec(ctx, q); err != nil {
			b.Fatalf("fill rule_hits_1h: %v", err)
		}
	}
	b.Logf("filled %d rollup rows of %d days in %s", gapsDays*gapsEdges, gapsDays, time.Since(t0).Round(time.Second))
}

func BenchmarkGaps(b *testing.B) {
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
		var in audit.GapsInput
		if in.Edges, err = r.ServiceEdges(ctx, w); err != nil {
			b.Fatal(err)
		}
		if in.Violations, err = r.ViolationEdges(ctx, w); err != nil {
			b.Fatal(err)
		}
		if in.Mismatches, err = r.EnforcementMismatches(ctx, w); err != nil {
			b.Fatal(err)
		}
		if in.Versions, err = r.AppliedPolicies(ctx); err != nil {
			b.Fatal(err)
		}
		tq := time.Since(t0)
		rep := audit.Gaps(m, in, audit.DefaultGapsOptions(w))
		total := time.Since(t0)
		kinds := map[string]int{}
		for _, f := range rep.Findings {
			kinds[f.Kind]++
		}
		b.ReportMetric(total.Seconds(), "s/run")
		b.ReportMetric(tq.Seconds(), "s/query")
		b.ReportMetric(float64(len(in.Edges)), "edges")
		b.Logf("gaps over %d days, %d rules, %d segments: %d edges, %d violation edges; query %s, analysis %s, total %s; %d findings %v",
			gapsDays, len(p.Rules), len(p.Segments), len(in.Edges), len(in.Violations), tq.Round(time.Millisecond),
			(total - tq).Round(time.Millisecond), total.Round(time.Millisecond), len(rep.Findings), kinds)
	}
}
