package main

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
)

// TestIdentitySourcesEndToEnd runs what the demo shows: `simulate access`
// for every identity source through the listeners the demo uses (syslog
// UDP and TCP, HTTP), then flows from one bound host per source; each
// flow lands in ClickHouse attributed by its source.
func TestIdentitySourcesEndToEnd(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{})
	p.Start()
	targets := map[simulate.AccessFormat]string{
		simulate.AccessOpenVPN:  "udp://" + p.SyslogUDP,
		simulate.AccessRADIUS:   "tcp://" + p.SyslogTCP,
		simulate.AccessKerberos: "udp://" + p.SyslogUDP,
		simulate.AccessWindows:  "http://" + p.HTTPAddr,
		simulate.AccessDHCP:     "udp://" + p.SyslogUDP,
	}
	for f, target := range targets {
		// Four sessions each, none stopped (every fifth one is).
		if _, err := simulate.RunAccess(context.Background(), simulate.AccessConfig{Target: target, Format: f, Count: 4, Seed: 1}); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	p.WaitMetric("flowaudit_enrich_access_events_total", 20, 60*time.Second)
	nextSecond()
	fs := newFlowSender(t, p.NetFlowAddr)
	for _, h := range []string{"10.1.0.10", "10.1.0.20", "10.1.0.30", "10.1.0.40", "10.1.0.50", "10.1.0.60"} {
		fs.send(h, 40000, "192.0.2.80", 443, 2)
	}
	if got := waitFlows(t, ch, 12, 60*time.Second); got != 12 {
		t.Fatalf("%d flows, want 12", got)
	}
	rows, err := ch.Conn(t).Query(context.Background(), `SELECT IPv6NumToString(src_addr), src_identity_source, src_identity, src_device, toUInt64(count())
		FROM flowaudit.flows GROUP BY src_addr, src_identity_source, src_identity, src_device ORDER BY src_addr`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got [][5]any
	for rows.Next() {
		var a, src, id, dev string
		var n uint64
		if err := rows.Scan(&a, &src, &id, &dev, &n); err != nil {
			t.Fatal(err)
		}
		got = append(got, [5]any{a, src, id, dev, n})
	}
	want := [][5]any{
		{"::ffff:10.1.0.10", "openvpn", "alice", "", uint64(2)},
		{"::ffff:10.1.0.20", "radius", "alice", "02:00:5e:01:00:00", uint64(2)},
		{"::ffff:10.1.0.30", "kerberos", "alice@EXAMPLE.COM", "", uint64(2)},
		{"::ffff:10.1.0.40", "windows", `EXAMPLE\alice`, "", uint64(2)},
		{"::ffff:10.1.0.50", "dhcp", "", "02:00:5e:04:00:00 laptop-0", uint64(2)},
		{"::ffff:10.1.0.60", "", "", "", uint64(2)},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("flows by source (-got +want):\n%s", diff)
	}
}
