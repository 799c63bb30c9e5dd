package console

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/sink"
)

// BenchmarkPages measures every page's full answer (queries and
// rendering, over HTTP) with FLOWAUDIT_BENCH_FLOWS flows stored (default
// 10,000,000) spread over the 24 hours before now, 40 segments, 4,000
// addresses, 8 identities, 12 services, and reports each page's p50 and
// p95 in ms. Run it alone:
//
//	go test -run '^$' -bench BenchmarkPages -benchtime 20x -timeout 30m ./console
func BenchmarkPages(b *testing.B) {
	n := 10_000_000
	if s := os.Getenv("FLOWAUDIT_BENCH_FLOWS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1000 {
			b.Fatalf("FLOWAUDIT_BENCH_FLOWS=%q: want a number of flows >= 1000", s)
		}
		n = v
	}
	ch := testutil.StartClickHouse(b)
	conn := ch.Conn(b)
	ctx := context.Background()
	if _, err := sink.Migrate(ctx, conn, "flowaudit", 0, nil); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Minute)
	start := now.Add(-24 * time.Hour)
	loaded := time.Now()
	const chunk = 250_000
	for off := 0; off < n; off += chunk {
		m := min(chunk, n-off)
		if err := conn.Exec(ctx, benchInsert(start, n, off, m)); err != nil {
			b.Fatalf("insert: %v", err)
		}
	}
	alerts := fmt.Sprintf(`INSERT INTO flowaudit.alerts (alert_id, time, kind, severity, src_addr, dst_addr, src_segment, dst_segment,
    src_identity, dst_port, proto, first_seen, last_seen, count, bytes, summary, evidence, version)
SELECT concat('a-', toString(number)), toDateTime(%[1]d + number * 60), 'policy_violation', 'high',
    IPv6StringToNum('::ffff:10.1.0.6'), IPv6StringToNum('::ffff:10.2.0.10'), 's01', 's02', 'user-1', toUInt16(5432), toUInt8(6),
    toDateTime(%[1]d + number * 60), toDateTime(%[1]d + number * 60 + 30), toUInt64(2), toUInt64(600),
    's01 -> s02 5432/tcp is not allowed', '{"flows":2}', toUInt64(1)
FROM numbers(1000)`, start.Unix())
	if err := conn.Exec(ctx, alerts); err != nil {
		b.Fatal(err)
	}
	stored := ch.QueryUint64(b, "SELECT toUInt64(count()) FROM flowaudit.flows")
	b.Logf("%d flows stored in %s", stored, time.Since(loaded).Round(time.Second))

	pf := filepath.Join(b.TempDir(), "policy.yaml")
	var pol strings.Builder
	pol.WriteString("segments:\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&pol, "  - name: s%02d\n    cidrs: [10.%d.0.0/16]\n", i, i)
	}
	pol.WriteString("rules:\n  - name: s00-to-s01\n    from: [s00]\n    to: [s01]\n    ports: [\"443/tcp\"]\n")
	if err := os.WriteFile(pf, []byte(pol.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	srv, err := New(Configuration{Listen: "127.0.0.1:0"}, Dependencies{Reader: query.New(conn, "flowaudit"), PolicyFile: pf,
		Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	pages := []struct{ name, path string }{
		{"map-24h", "/map?range=24h"},
		{"map-24h-edge", "/map?range=24h&client=s01&server=s02"},
		{"map-1h-flows", "/map?range=1h"},
		{"map-24h-zoom", "/map?range=24h&segment=s03"},
		{"api-edges-24h", "/api/edges?range=24h"},
		{"flows-1h", "/flows?range=1h"},
		{"flows-1h-port", "/flows?range=1h&port=5432&dim=client_identity"},
		{"flows-24h", "/flows?range=24h"},
		{"alerts-7d", "/alerts?range=7d"},
		{"alert", "/alerts/a-7"},
		{"audit-7d", "/audit?range=7d"},
	}
	for _, pg := range pages {
		b.Run(pg.name, func(b *testing.B) {
			var lat []time.Duration
			for i := 0; i < b.N; i++ {
				t := time.Now()
				resp, err := http.Get(hs.URL + pg.path)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("%s: %d %s", pg.path, resp.StatusCode, body)
				}
				lat = append(lat, time.Since(t))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			q := func(f float64) float64 {
				return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.95), "p95-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// benchInsert inserts flows off..off+m of n, evenly over the 24 hours
// after start.
func benchInsert(start time.Time, n, off, m int) string {
	return fmt.Sprintf(`INSERT INTO flowaudit.flows (time_received, time_end, flow_type, exporter, src_addr, dst_addr, src_port, dst_port, proto,
    bytes, packets, src_segment, dst_segment, src_workload, dst_workload, src_identity, verdict, rule, staged_verdict, service_side, service_port)
SELECT toDateTime(%[1]d + intDiv(i * 86400, %[2]d)) AS t, t, 'ipfix',
    IPv6StringToNum(concat('::ffff:192.0.2.', toString(1 + i %% 4))),
    IPv6StringToNum(concat('::ffff:10.', toString(sa %% 40), '.0.', toString(sa %% 100))),
    IPv6StringToNum(concat('::ffff:10.', toString(da %% 40), '.1.', toString(da %% 100))),
    toUInt16(32768 + i %% 20000), toUInt16(arrayElement([443, 80, 5432, 22, 53, 8080, 6379, 9092, 3306, 25, 123, 389], toUInt32(1 + intDiv(i, 7) %% 12))), toUInt8(6),
    toUInt64(100 + i %% 1400), toUInt64(1 + i %% 9),
    concat('s', if(sa %% 40 < 10, '0', ''), toString(sa %% 40)), concat('s', if(da %% 40 < 10, '0', ''), toString(da %% 40)),
    concat('wl-', toString(sa %% 5)), concat('wl-', toString(da %% 5)),
    if(i %% 3 = 0, '', concat('user-', toString(i %% 8))),
    if(i %% 50 = 0, 'violation', 'allowed'), if(i %% 50 = 0, '', 'r1'), if(i %% 40 = 0, 'violation', 'allowed'), 'dst',
    toUInt16(arrayElement([443, 80, 5432, 22, 53, 8080, 6379, 9092, 3306, 25, 123, 389], toUInt32(1 + intDiv(i, 7) %% 12)))
FROM (SELECT number + %[3]d AS i, (i * 7919) %% 4000 AS sa, (i * 104729 + 13) %% 4000 AS da FROM numbers(%[4]d))`,
		start.Unix(), n, off, m)
}
