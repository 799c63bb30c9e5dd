package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/sink"
)

// t0 is the fixture's hour; every flow lies in [t0, t0+30m).
var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

type fixtureFlow struct {
	at             time.Duration
	src, dst       string
	sport, dport   uint16
	proto          uint8
	bytes          uint64
	srcSeg, dstSeg string
	srcID, dstID   string
	verdict, rule  string
	staged, sRule  string
	side           string
	n              int // copies
}

// fixture is a small segmented network: web talks to app (allowed, with a
// reply), to db (a violation); app to db is allowed today but a staged
// rule would deny it; the internet reaches web; app talks inside itself.
var fixture = []fixtureFlow{
	{at: time.Minute, src: "10.1.0.5", dst: "10.3.0.10", sport: 40001, dport: 8080, proto: 6, bytes: 1000,
		srcSeg: "web", dstSeg: "app", srcID: "alice", verdict: "allowed", rule: "web-to-app", staged: "allowed", sRule: "web-to-app", side: "dst", n: 3},
	{at: 2 * time.Minute, src: "10.3.0.10", dst: "10.1.0.5", sport: 8080, dport: 40001, proto: 6, bytes: 5000,
		srcSeg: "app", dstSeg: "web", dstID: "alice", verdict: "allowed", rule: "web-to-app", staged: "allowed", sRule: "web-to-app", side: "src", n: 1},
	{at: 3 * time.Minute, src: "10.1.0.6", dst: "10.2.0.10", sport: 50000, dport: 5432, proto: 6, bytes: 300,
		srcSeg: "web", dstSeg: "db", srcID: "bob", verdict: "violation", staged: "violation", side: "dst", n: 2},
	{at: 4 * time.Minute, src: "10.3.0.10", dst: "10.2.0.10", sport: 51000, dport: 5432, proto: 6, bytes: 700,
		srcSeg: "app", dstSeg: "db", srcID: "svc-checkout", verdict: "allowed", rule: "app-to-db", staged: "violation", side: "dst", n: 4},
	{at: 5 * time.Minute, src: "198.51.100.7", dst: "10.1.0.5", sport: 33000, dport: 443, proto: 6, bytes: 900,
		srcSeg: "external", dstSeg: "web", verdict: "allowed", rule: "internet-to-web", staged: "allowed", sRule: "internet-to-web", side: "dst", n: 5},
	{at: 6 * time.Minute, src: "10.3.0.11", dst: "10.3.0.10", sport: 52000, dport: 9000, proto: 17, bytes: 50,
		srcSeg: "app", dstSeg: "app", verdict: "intra_segment", staged: "intra_segment", side: "dst", n: 1},
}

const fixturePolicy = `segments:
  - name: web
    cidrs: [10.1.0.0/16]
  - name: app
    cidrs: [10.3.0.0/16]
  - name: db
    cidrs: [10.2.0.0/16]
    tags: [pci-cde, sensitive]
rules:
  - name: web-to-app
    from: [web]
    to: [app]
    ports: ["8080/tcp"]
  - name: app-to-db
    from: [app]
    to: [db]
    ports: ["5432/tcp"]
  - name: internet-to-web
    from: [external]
    to: [web]
    ports: ["443/tcp"]
`

func mapped(s string) string { return "::ffff:" + s }

// env is a console over a real ClickHouse holding the fixture.
type env struct {
	ch     *testutil.ClickHouseServer
	reader *query.Reader
	srv    *Server
	http   *httptest.Server
}

func startEnv(t *testing.T, cfg Configuration) *env {
	t.Helper()
	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	ctx := context.Background()
	if _, err := sink.Migrate(ctx, conn, "flowaudit", 0, nil); err != nil {
		t.Fatal(err)
	}
	var sel []string
	for _, f := range fixture {
		for i := 0; i < f.n; i++ {
			sel = append(sel, fmt.Sprintf(`SELECT toDateTime(%d) AS time_received, IPv6StringToNum('%s') AS src_addr, IPv6StringToNum('%s') AS dst_addr,
  toUInt16(%d) AS src_port, toUInt16(%d) AS dst_port, toUInt8(%d) AS proto, toUInt64(%d) AS bytes, toUInt64(1) AS packets,
  '%s' AS src_segment, '%s' AS dst_segment, '%s' AS src_identity, '%s' AS dst_identity, '%s' AS verdict, '%s' AS rule,
  '%s' AS staged_verdict, '%s' AS staged_rule, '%s' AS service_side, toUInt16(%d) AS service_port,
  IPv6StringToNum('::ffff:192.0.2.1') AS exporter`,
				t0.Add(f.at).Unix(), mapped(f.src), mapped(f.dst), f.sport, f.dport, f.proto, f.bytes,
				f.srcSeg, f.dstSeg, f.srcID, f.dstID, f.verdict, f.rule, f.staged, f.sRule, f.side, servicePortOf(f)))
		}
	}
	q := "INSERT INTO flowaudit.flows (time_received, src_addr, dst_addr, src_port, dst_port, proto, bytes, packets, " +
		"src_segment, dst_segment, src_identity, dst_identity, verdict, rule, staged_verdict, staged_rule, service_side, service_port, exporter) " +
		strings.Join(sel, " UNION ALL ")
	if err := conn.Exec(ctx, q); err != nil {
		t.Fatalf("insert flows: %v", err)
	}
	alert := fmt.Sprintf(`INSERT INTO flowaudit.alerts (alert_id, time, kind, severity, src_addr, dst_addr, src_segment, dst_segment, src_identity, dst_port, proto, first_seen, last_seen, count, bytes, summary, evidence, version)
SELECT 'a-web-db', toDateTime(%d), 'policy_violation', 'high', IPv6StringToNum('::ffff:10.1.0.6'), IPv6StringToNum('::ffff:10.2.0.10'),
  'web', 'db', 'bob', toUInt16(5432), toUInt8(6), toDateTime(%d), toDateTime(%d), toUInt64(2), toUInt64(600),
  'web -> db 5432/tcp is not allowed', '{"flows":2,"rule":""}', toUInt64(1)`,
		t0.Add(3*time.Minute).Unix(), t0.Add(3*time.Minute).Unix(), t0.Add(4*time.Minute).Unix())
	if err := conn.Exec(ctx, alert); err != nil {
		t.Fatalf("insert alert: %v", err)
	}
	pf := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pf, []byte(fixturePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	r := query.New(conn, "flowaudit")
	srv, err := New(cfg, Dependencies{Reader: r, PolicyFile: pf, Now: func() time.Time { return t0.Add(40 * time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &env{ch: ch, reader: r, srv: srv, http: hs}
}

func servicePortOf(f fixtureFlow) uint16 {
	if f.side == "src" {
		return f.sport
	}
	return f.dport
}

// wantEdges are the fixture's segment edges in the service orientation.
var wantEdges = []query.SegmentEdge{
	{Client: "app", Server: "app", Flows: 1, Bytes: 50},
	{Client: "app", Server: "db", Flows: 4, Bytes: 2800, StagedDenies: 4},
	{Client: "external", Server: "web", Flows: 5, Bytes: 4500},
	{Client: "web", Server: "app", Flows: 4, Bytes: 8000},
	{Client: "web", Server: "db", Flows: 2, Bytes: 600, Violations: 2},
}

// fixtureRange is the fixture's hour: whole hours read the rollup.
var fixtureRange = "from=" + t0.Format(time.RFC3339) + "&to=" + t0.Add(time.Hour).Format(time.RFC3339)

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSegmentEdgesRollupAndFlowsAgree(t *testing.T) {
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0"})
	ctx := context.Background()
	hour := query.Window{From: t0, To: t0.Add(time.Hour)}
	rollup, err := e.reader.SegmentEdges(ctx, hour, query.EdgeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantEdges, rollup); d != "" {
		t.Errorf("edges from rule_hits_1h (-want +got):\n%s", d)
	}
	raw, err := e.reader.SegmentEdges(ctx, query.Window{From: t0, To: t0.Add(30 * time.Minute)}, query.EdgeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantEdges, raw); d != "" {
		t.Errorf("edges from flows (-want +got):\n%s", d)
	}
	for _, f := range []query.EdgeFilter{{Port: 5432}, {Identity: "alice"}, {Verdict: "violation"}, {Verdict: query.VerdictStaged}} {
		a, err := e.reader.SegmentEdges(ctx, hour, f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.reader.SegmentEdges(ctx, query.Window{From: t0, To: t0.Add(30 * time.Minute)}, f)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(a, b); d != "" || len(a) == 0 {
			t.Errorf("filter %+v: rollup and flows differ or are empty (-rollup +flows):\n%s", f, d)
		}
	}
	staged, _ := e.reader.SegmentEdges(ctx, hour, query.EdgeFilter{Verdict: query.VerdictStaged})
	if d := cmp.Diff([]query.SegmentEdge{wantEdges[1]}, staged); d != "" {
		t.Errorf("staged_deny filter (-want +got):\n%s", d)
	}
	d, err := e.reader.EdgeDetail(ctx, hour, query.EdgeFilter{}, "web", "app", 10)
	if err != nil {
		t.Fatal(err)
	}
	want := &query.EdgeDetail{
		Ports:      []query.EdgePort{{Port: 8080, Proto: 6, Flows: 4, Bytes: 8000}},
		Identities: []query.Tally{{Value: "alice", Flows: 4}},
		Talkers:    []query.Talker{{Client: ip("10.1.0.5"), Server: ip("10.3.0.10"), Flows: 4, Bytes: 8000}},
		Rules:      []query.EdgeRule{{Rule: "web-to-app", Verdict: "allowed", StagedRule: "web-to-app", StagedVerdict: "allowed", Flows: 4}},
	}
	if diff := cmp.Diff(want, d, cmp.Comparer(func(a, b interface{ String() string }) bool { return a.String() == b.String() })); diff != "" {
		t.Errorf("edge detail web->app (-want +got):\n%s", diff)
	}
}

func TestPagesAndAPI(t *testing.T) {
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0"})
	code, body := get(t, e.http.URL+"/api/edges?"+fixtureRange, "")
	if code != 200 {
		t.Fatalf("/api/edges: %d %s", code, body)
	}
	var got struct {
		Edges []apiEdge `json:"edges"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	var want []apiEdge
	for _, w := range wantEdges {
		want = append(want, apiEdge{w.Client, w.Server, w.Class(), w.Flows, w.Bytes, w.Violations, w.StagedDenies})
	}
	if d := cmp.Diff(want, got.Edges); d != "" {
		t.Errorf("/api/edges (-want +got):\n%s", d)
	}
	for _, c := range []struct {
		path  string
		code  int
		needs []string
	}{
		{"/map?" + fixtureRange, 200, []string{`data-segment="db"`, `class="node sensitive" data-segment="db"`, `data-client="web" data-server="db" data-class="violation"`,
			`data-client="app" data-server="db" data-class="staged_deny"`}},
		{"/map?" + fixtureRange + "&client=web&server=db", 200, []string{`id="edge-ports"`, `<td>5432</td><td>tcp</td><td>2</td>`, `href="/alerts/a-web-db"`, "bob"}},
		{"/flows?" + fixtureRange, 200, []string{"Flows 1–16 of 16", "198.51.100.7:33000"}},
		{"/flows?" + fixtureRange + "&port=5432&verdict=violation", 200, []string{"Flows 1–2 of 2", "10.1.0.6:50000"}},
		{"/alerts?" + fixtureRange, 200, []string{`data-id="a-web-db"`, "high: 1", "policy_violation: 1"}},
		{"/alerts/a-web-db", 200, []string{"web -&gt; db 5432/tcp is not allowed", `&#34;flows&#34;: 2`, "/flows?addr=10.1.0.6"}},
		{"/alerts/nope", 404, []string{"no alert"}},
		{"/audit?" + fixtureRange, 200, []string{`id="rules"`, "Download as policy"}},
		{"/audit/policy.yaml?" + fixtureRange, 200, []string{"segments:", "rules:"}},
		{"/identities?" + fixtureRange, 200, []string{`id="identity-access"`, "svc-checkout"}},
		{"/reports", 200, []string{"No report packs in this range"}},
		{"/map?port=70000", 400, []string{"port: &#34;70000&#34; is not a port number"}},
		{"/static/style.css", 200, []string{"#segment-map"}},
	} {
		code, body := get(t, e.http.URL+c.path, "")
		if code != c.code {
			t.Errorf("%s: status %d, want %d: %s", c.path, code, c.code, body)
		}
		for _, n := range c.needs {
			if !strings.Contains(body, n) {
				t.Errorf("%s: body lacks %q:\n%s", c.path, n, body)
			}
		}
	}
}

func TestTokens(t *testing.T) {
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0", Tokens: []string{"s3cret-token"}})
	routes := []string{"/", "/map", "/api/edges", "/flows", "/alerts", "/alerts/a-web-db", "/audit", "/audit/policy.yaml",
		"/identities", "/reports", "/static/style.css", "/nothing-here"}
	for _, r := range routes {
		if code, body := get(t, e.http.URL+r, ""); code != http.StatusUnauthorized || !strings.Contains(body, "console.tokens") {
			t.Errorf("%s without a token: %d %q, want 401 naming console.tokens", r, code, body)
		}
		if code, _ := get(t, e.http.URL+r, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", r, code)
		}
	}
	for _, r := range routes[1:11] {
		if code, body := get(t, e.http.URL+r+"?"+fixtureRange, "s3cret-token"); code != http.StatusOK {
			t.Errorf("%s with the token: %d, want 200: %s", r, code, body)
		}
	}
	// ?token= sets a cookie and redirects to the page without the token.
	jar := &cookieJar{}
	c := &http.Client{Jar: jar}
	resp, err := c.Get(e.http.URL + "/flows?range=1h&token=s3cret-token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.RawQuery != "range=1h" {
		t.Errorf("login: %d at %s, want 200 at /flows?range=1h", resp.StatusCode, resp.Request.URL)
	}
}

type cookieJar struct{ c []*http.Cookie }

func (j *cookieJar) SetCookies(_ *urlURL, cs []*http.Cookie) { j.c = append(j.c, cs...) }
func (j *cookieJar) Cookies(*urlURL) []*http.Cookie          { return j.c }

func TestConfigurationRefusesOpenListenWithoutTokens(t *testing.T) {
	for _, c := range []struct {
		cfg  Configuration
		want string // "" = valid
	}{
		{Configuration{Listen: "127.0.0.1:8088"}, ""},
		{Configuration{Listen: "[::1]:8088"}, ""},
		{Configuration{Listen: "localhost:8088"}, ""},
		{Configuration{Listen: ""}, ""},
		{Configuration{Listen: "0.0.0.0:8088"}, "console.tokens"},
		{Configuration{Listen: ":8088"}, "console.tokens"},
		{Configuration{Listen: "10.0.0.1:8088"}, "console.tokens"},
		{Configuration{Listen: "0.0.0.0:8088", Tokens: []string{"t"}}, ""},
		{Configuration{Listen: "127.0.0.1:8088", Tokens: []string{""}}, "console.tokens[0]"},
		{Configuration{Listen: "nonsense"}, "console.listen"},
	} {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", c.cfg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
	if _, err := New(Configuration{Listen: "0.0.0.0:8088"}, Dependencies{}); err == nil || !strings.Contains(err.Error(), "console.tokens") {
		t.Errorf("New on 0.0.0.0 without tokens: %v, want an error naming console.tokens", err)
	}
}

type urlURL = url.URL

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }
