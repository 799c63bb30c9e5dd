package probe

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/reporter"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/sink"
)

func TestDefaultConfiguration(t *testing.T) {
	if err := DefaultConfiguration().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultConfiguration()
	bad.Rate, bad.Timeout, bad.Schedule = 0, 0, "every tuesday"
	err := bad.Validate()
	for _, key := range []string{"probe.rate", "probe.timeout", "probe.schedule"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate() = %v, want an error naming %s", err, key)
		}
	}
}

func listen(t *testing.T, addr string) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// loopbackRun probes two loopback "segments" from 127.0.0.1 (external):
// one allowed port with a listener (pass), one port the policy allows
// only from the other segment, with a listener (breach), and one allowed
// port nobody listens on (closed: pass).
func loopbackRun(t *testing.T) (*Report, uint16, uint16, uint16) {
	allowed := listen(t, "127.0.0.2:0")
	hole := listen(t, "127.0.0.2:0")
	// A port that was free a moment ago: allowed, and refused.
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := uint16(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	m := compile(t, fmt.Sprintf(`segments:
  - name: svc
    cidrs: [127.0.0.2/32]
    tags: [sensitive]
  - name: other
    cidrs: [127.0.0.3/32]
rules:
  - name: outside-to-svc
    from: [external]
    to: [svc]
    ports: ["%d/tcp", "%d/tcp"]
  - name: other-to-svc
    from: [other]
    to: [svc]
    ports: ["%d/tcp"]
`, allowed, closed, hole))
	cfg := DefaultConfiguration()
	cfg.Rate, cfg.Timeout, cfg.ICMP, cfg.DeniedSample = 2000, time.Second, false, 0
	rep, err := Run(context.Background(), cfg, m, Source{Segment: policy.External, Addr: netip.MustParseAddr("127.0.0.1")},
		RunOptions{Prober: "test", Now: time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return rep, allowed, hole, closed
}

func TestRunLoopbackAndStore(t *testing.T) {
	rep, allowed, hole, closed := loopbackRun(t)
	if rep.RunID != "20261201T200000Z-external-"+rep.RunID[len(rep.RunID)-8:] {
		t.Errorf("run id %q", rep.RunID)
	}
	find := func(port uint16) Result {
		for _, r := range rep.Results {
			if r.DstAddr == netip.MustParseAddr("127.0.0.2") && r.DstPort == port && r.Proto == policy.ProtoTCP {
				return r
			}
		}
		t.Fatalf("no result for 127.0.0.2:%d", port)
		return Result{}
	}
	type row struct {
		Expected Expectation
		Observed Observation
		Result   Outcome
		Rule     string
		Src      string
	}
	got := func(r Result) row { return row{r.Expected, r.Observed, r.Result, r.Rule, r.SrcAddr.String()} }
	if diff := cmp.Diff(got(find(allowed)), row{ExpectAllow, ObservedOpen, OutcomePass, "outside-to-svc", "127.0.0.1"}); diff != "" {
		t.Errorf("allowed port (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(got(find(hole)), row{ExpectDeny, ObservedOpen, OutcomeBreach, "", "127.0.0.1"}); diff != "" {
		t.Errorf("denied port with a listener (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(got(find(closed)), row{ExpectAllow, ObservedClosed, OutcomePass, "outside-to-svc", "127.0.0.1"}); diff != "" {
		t.Errorf("allowed port nobody listens on (-got +want):\n%s", diff)
	}
	if rep.Results[0].Result != OutcomeBreach || rep.Summary.Breach < 1 || rep.Summary.Skipped != 0 {
		t.Errorf("summary %+v, first result %+v", rep.Summary, rep.Results[0])
	}
	if n := rep.Summary.Pass + rep.Summary.Breach + rep.Summary.Blocked; n != len(rep.Results) {
		t.Errorf("summary %+v does not add up to %d results", rep.Summary, len(rep.Results))
	}
	alerts := Alerts(rep)
	if len(alerts) != rep.Summary.Breach {
		t.Fatalf("%d alerts for %d breaches", len(alerts), rep.Summary.Breach)
	}

	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	ctx := context.Background()
	v, err := sink.Migrate(ctx, conn, "flowaudit", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // twice: the alert stays one after FINAL
		if err := Store(ctx, conn, "flowaudit", v.Modern(), rep); err != nil {
			t.Fatal(err)
		}
	}
	var rows, breaches uint64
	if err := conn.QueryRow(ctx, "SELECT toUInt64(count()), toUInt64(countIf(result = 'breach')) FROM flowaudit.probe_results WHERE run_id = ?",
		rep.RunID).Scan(&rows, &breaches); err != nil {
		t.Fatal(err)
	}
	if rows != uint64(2*len(rep.Results)) || breaches != uint64(2*rep.Summary.Breach) {
		t.Errorf("probe_results: %d rows, %d breaches; want %d, %d", rows, breaches, 2*len(rep.Results), 2*rep.Summary.Breach)
	}
	var src, dst, kind, sev, summary string
	var port uint16
	var n uint64
	if err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT IPv6NumToString(src_addr), IPv6NumToString(dst_addr), kind, severity, dst_port, summary,
		toUInt64(count()) FROM flowaudit.alerts FINAL WHERE dst_port = %d GROUP BY src_addr, dst_addr, kind, severity, dst_port, summary`, hole)).Scan(
		&src, &dst, &kind, &sev, &port, &summary, &n); err != nil {
		t.Fatal(err)
	}
	want := []any{"::ffff:127.0.0.1", "::ffff:127.0.0.2", "segmentation_breach", "critical", hole,
		fmt.Sprintf("probe from 127.0.0.1 (external) reached 127.0.0.2 (svc) on %d/tcp, which the policy denies", hole), uint64(1)}
	if diff := cmp.Diff([]any{src, dst, kind, sev, port, summary, n}, want); diff != "" {
		t.Errorf("alert row (-got +want):\n%s", diff)
	}
}

func TestEchoLoopback(t *testing.T) {
	if err := ICMPAvailable(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Skipf("no ICMP socket here: %v", err)
	}
	p := &prober{timeout: 2 * time.Second}
	a := p.do(context.Background(), &Check{DstAddr: netip.MustParseAddr("127.0.0.2"), Proto: policy.ProtoICMP})
	if a.observed != ObservedOpen {
		t.Errorf("echo to 127.0.0.2: %+v, want open", a)
	}
}

func TestComponentWithoutSchedule(t *testing.T) {
	c, err := New(reporter.New(slog.New(slog.DiscardHandler)), DefaultConfiguration(), Dependencies{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
}
