package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/sink"
)

// digestFixture fills ClickHouse with a day of traffic and the day
// before it: a new violation edge into db as mallory (new, sensitive,
// hot), web-to-app in both days (neither new nor quiet), app-to-db only
// the day before (quiet), and one port_scan alert.
func digestFixture(t *testing.T, ch *testutil.ClickHouseServer) {
	t.Helper()
	conn := ch.Conn(t)
	ctx := context.Background()
	if _, err := sink.Migrate(ctx, conn, "flowaudit", 0, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Hour)
	var rows []string
	flow := func(at time.Duration, src, dst, srcSeg, dstSeg string, port uint16, id, verdict, rule string) {
		rows = append(rows, fmt.Sprintf(`SELECT toDateTime(%d) AS time_received, IPv6StringToNum('::ffff:%s') AS src_addr, IPv6StringToNum('::ffff:%s') AS dst_addr,
  toUInt16(40000) AS src_port, toUInt16(%d) AS dst_port, toUInt16(%d) AS service_port, toUInt8(6) AS proto, toUInt64(1000) AS bytes,
  '%s' AS src_segment, '%s' AS dst_segment, '%s' AS src_identity, '%s' AS verdict, '%s' AS rule, 'dst' AS service_side`,
			now.Add(-at).Unix(), src, dst, port, port, srcSeg, dstSeg, id, verdict, rule))
	}
	flow(30*time.Hour, "10.1.0.10", "10.3.0.10", "web", "app", 8080, "svc-web", "allowed", "web-to-app")
	flow(2*time.Hour, "10.1.0.10", "10.3.0.10", "web", "app", 8080, "svc-web", "allowed", "web-to-app")
	flow(30*time.Hour, "10.3.0.10", "10.2.0.10", "app", "db", 5432, "svc-app", "allowed", "app-to-db")
	flow(3*time.Hour, "10.1.0.66", "10.2.0.10", "web", "db", 22, "mallory", "violation", "")
	flow(2*time.Hour, "10.1.0.66", "10.2.0.11", "web", "db", 22, "mallory", "violation", "")
	q := `INSERT INTO flowaudit.flows (time_received, src_addr, dst_addr, src_port, dst_port, service_port, proto, bytes,
  src_segment, dst_segment, src_identity, verdict, rule, service_side) ` + strings.Join(rows, " UNION ALL ")
	if err := conn.Exec(ctx, q); err != nil {
		t.Fatalf("insert flows: %v", err)
	}
	at := now.Add(-2 * time.Hour).Unix()
	if err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO flowaudit.alerts (alert_id, time, kind, severity, src_addr, dst_addr, src_segment, dst_segment, dst_port, proto, first_seen, last_seen, summary, evidence, version)
SELECT 'a1', toDateTime(%d), 'port_scan', 'high', IPv6StringToNum('::ffff:10.1.0.66'), IPv6StringToNum('::'), 'web', 'db', toUInt16(0), toUInt8(6), toDateTime(%d), toDateTime(%d), 's', '{}', toUInt64(1)`,
		at, at, at)); err != nil {
		t.Fatalf("insert alert: %v", err)
	}
}

// digestWant checks the parts of d the fixture decides.
func digestWant(d *audit.Digest) string {
	var b strings.Builder
	for _, e := range d.New.Edges {
		fmt.Fprintf(&b, "new %s->%s %d/%s %s %d\n", e.ClientSegment, e.ServerSegment, e.Port, e.Proto, e.Identity, e.Flows)
	}
	for _, e := range d.New.SensitiveIdentities {
		fmt.Fprintf(&b, "sensitive %s->%s %s\n", e.ClientSegment, e.ServerSegment, e.Identity)
	}
	for _, v := range d.Hot.Violations {
		fmt.Fprintf(&b, "hot %s->%s %d/%s %d\n", v.ClientSegment, v.ServerSegment, v.Port, v.Proto, v.Flows)
	}
	for _, a := range d.Hot.Alerts {
		fmt.Fprintf(&b, "alerts %s/%s %d\n", a.Kind, a.Severity, a.Count)
	}
	for _, q := range d.Quiet {
		fmt.Fprintf(&b, "quiet %s %d\n", q.Rule, q.PreviousFlows)
	}
	return b.String()
}

const digestExpected = `new web->db 22/tcp mallory 2
sensitive web->db mallory
hot web->db 22/tcp 2
alerts port_scan/high 1
quiet app-to-db 1
`

func TestAuditDigestCLI(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	digestFixture(t, ch)
	policyPath, err := filepath.Abs(scenarioPolicyPath(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "flowaudit.yaml")
	if err := os.WriteFile(cfg, []byte("clickhouse:\n  addr: "+ch.Addr+"\npolicy:\n  file: "+policyPath+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, "audit", "digest", "--config", cfg, "--format", "json")
	if res.code != 0 {
		t.Fatalf("audit digest --format json: exit %d\n%s", res.code, res.stderr)
	}
	var d audit.Digest
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil {
		t.Fatalf("not a digest: %v\n%s", err, res.stdout)
	}
	if diff := cmp.Diff(digestWant(&d), digestExpected); diff != "" {
		t.Errorf("digest (-got +want):\n%s", diff)
	}
	res = runCLI(t, "audit", "digest", "--config", cfg)
	for _, s := range []string{"NEW: 1 edges, 1 identities into sensitive segments, 0 policy versions", "HOT: top 1 violation edges",
		"alerts: port_scan/high 1", "QUIET: 1 rules lost their traffic", "app-to-db"} {
		if !strings.Contains(res.stdout, s) {
			t.Errorf("table lacks %q:\n%s", s, res.stdout)
		}
	}
	for _, part := range []string{"new", "hot", "quiet"} {
		if res := runCLI(t, "audit", "digest", "--config", cfg, "--fail-on", part); res.code != 1 {
			t.Errorf("--fail-on %s: exit %d, want 1", part, res.code)
		}
	}
	if res := runCLI(t, "audit", "digest", "--config", cfg, "--since", "1h", "--fail-on", "new"); res.code != 0 {
		t.Errorf("--since 1h --fail-on new: exit %d, want 0 (the edge is older)\n%s", res.code, res.stdout)
	}
	if res := runCLI(t, "audit", "digest", "--fail-on", "x"); res.code != 2 || !strings.Contains(res.stderr, `--fail-on: "x" is not new, hot, quiet or none`) {
		t.Errorf("bad --fail-on: exit %d, %s", res.code, res.stderr)
	}
	if res := runCLI(t, "audit", "digest", "--help"); res.code != 0 || !strings.Contains(res.stderr, "Usage: flowaudit audit digest") {
		t.Errorf("--help: exit %d, %s", res.code, res.stderr)
	}
}

// TestDigestSchedule runs flowaudit run with audit.digest_schedule every
// second (the parser's optional seconds field) and checks a signed digest
// arrives at a real HTTP receiver with the fixture's content, and the
// policy version the enricher applied at start.
func TestDigestSchedule(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	digestFixture(t, ch)
	const secret = "digest-secret"
	var mu sync.Mutex
	var got []*audit.Digest
	var problems []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		var ev DigestEvent
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Header.Get("X-Flowaudit-Signature") != hex.EncodeToString(mac.Sum(nil)):
			problems = append(problems, "bad signature")
		case r.Header.Get("X-Flowaudit-Event") != "digest":
			problems = append(problems, "event header "+r.Header.Get("X-Flowaudit-Event"))
		case json.Unmarshal(body, &ev) != nil || ev.Event != "digest" || ev.Digest == nil:
			problems = append(problems, "body "+string(body))
		default:
			got = append(got, ev.Digest)
		}
	}))
	defer srv.Close()
	policyPath, err := filepath.Abs(scenarioPolicyPath(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, ch, pipelineOptions{extraYAML: fmt.Sprintf(`policy:
  file: %s
alerts:
  webhooks:
    - url: %s/hook
      secret: %s
audit:
  digest_schedule: "* * * * * *"
console:
  listen: ""
`, policyPath, srv.URL, secret)})
	p.Start()
	deadline := time.Now().Add(60 * time.Second)
	var last *audit.Digest
	for {
		mu.Lock()
		if len(got) > 0 {
			last = got[len(got)-1]
		}
		bad := append([]string(nil), problems...)
		mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("receiver: %v", bad)
		}
		if last != nil && len(last.New.PolicyVersions) == 1 && digestWant(last) == digestExpected {
			break
		}
		if time.Now().After(deadline) {
			if last == nil {
				t.Fatal("no digest received in 60 s")
			}
			t.Fatalf("last digest: %d policy versions, content (-got +want):\n%s", len(last.New.PolicyVersions), cmp.Diff(digestWant(last), digestExpected))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v := last.New.PolicyVersions[0]; v.Previous != "" || v.Summary == "" {
		t.Errorf("policy version %+v: want the first version with a summary", v)
	}
	p.Stop()
}
