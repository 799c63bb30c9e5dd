package console

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

// The identities page is `audit identities` over the page's range: the
// CSV it offers is byte for byte what the audit layer writes.
func TestIdentitiesPageIsTheIdentityReview(t *testing.T) {
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0"})
	ctx := context.Background()
	w := query.Window{From: t0, To: t0.Add(time.Hour)}
	edges, err := e.reader.IdentityEdges(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := e.reader.AccessSessions(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(pf, []byte(fixturePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(pf)
	if err != nil {
		t.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := audit.WriteIdentityCSV(&want, audit.ReviewIdentities(edges, sessions, m, audit.IdentityOptions{Window: w})); err != nil {
		t.Fatal(err)
	}
	code, got := get(t, e.http.URL+"/identities.csv?"+fixtureRange, "")
	if code != 200 || got != want.String() || !strings.Contains(got, "bob,user,web,db,,5432,6,5432/tcp,true,flow,violation") {
		t.Errorf("/identities.csv: %d\n%s\nwant\n%s", code, got, want.String())
	}
	// One identity.
	code, body := get(t, e.http.URL+"/identities?"+fixtureRange+"&identity=alice", "")
	if code != 200 || !strings.Contains(body, `<tr data-identity="alice"`) || strings.Contains(body, `<tr data-identity="bob"`) {
		t.Errorf("/identities?identity=alice: %d, want alice's row only", code)
	}
}

func TestReportsPage(t *testing.T) {
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0"})
	ctx := context.Background()
	conn := e.ch.Conn(t)
	root := t.TempDir()
	inside := filepath.Join(root, "pci-dss-4-20261130T110000Z")
	outside := t.TempDir()
	for _, d := range []string{inside, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string]string{"index.html": "<!doctype html><style>p{color:red}</style><p>pack</p>", "report.pdf": "%PDF-1.4 pack",
			"report.json": `{"summary":{}}`, "MANIFEST.sha256": "abc  report.json\n"} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ins := fmt.Sprintf(`INSERT INTO flowaudit.reports (report_id, framework, generated_at, window_from, window_to, path, sha256, summary)
SELECT 'pci-dss-4-20261130T110000Z', 'pci-dss-4', toDateTime(%d), toDateTime(%d), toDateTime(%d), '%s', 'feed',
  '{"flows":16,"violations":2,"flows_into_cde":6,"alerts":1,"controls_met":5,"controls_findings":2,"controls_not_assessable":1}'
UNION ALL
SELECT 'soc2-20261130T110500Z', 'soc2', toDateTime(%d), toDateTime(%d), toDateTime(%d), '%s', 'beef', '{"flows":16}'`,
		t0.Add(time.Hour).Unix(), t0.Add(-89*24*time.Hour).Unix(), t0.Add(time.Hour).Unix(), inside,
		t0.Add(65*time.Minute).Unix(), t0.Add(-89*24*time.Hour).Unix(), t0.Add(time.Hour).Unix(), outside)
	if err := conn.Exec(ctx, ins); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Configuration{Listen: "127.0.0.1:0"}, Dependencies{Reader: e.reader, ReportDir: root, Now: func() time.Time { return t0.Add(2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	code, body := get(t, hs.URL+"/reports", "")
	for _, n := range []string{`<tr data-id="soc2-20261130T110500Z">`, `<tr data-id="pci-dss-4-20261130T110000Z">`,
		`<td>5</td><td class="v violation">2</td><td>1</td>`, `href="/reports/pci-dss-4-20261130T110000Z/index.html"`,
		`href="/reports/pci-dss-4-20261130T110000Z/report.pdf"`, "not under report.dir here"} {
		if code != 200 || !strings.Contains(body, n) {
			t.Errorf("/reports: %d lacks %q", code, n)
		}
	}
	if strings.Index(body, "soc2-2026") > strings.Index(body, "pci-dss-4-2026") {
		t.Errorf("/reports: not newest first")
	}
	resp, err := http.Get(hs.URL + "/reports/pci-dss-4-20261130T110000Z/index.html")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("pack index.html: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/reports/pci-dss-4-20261130T110000Z/report.pdf", 200, "%PDF-1.4 pack"},
		{"/reports/soc2-20261130T110500Z/index.html", 404, "not under this console's report.dir"},
		{"/reports/pci-dss-4-20261130T110000Z/..%2f..%2fetc%2fpasswd", 404, "is not a file of a pack"},
		{"/reports/nope/index.html", 404, `no report "nope"`},
	} {
		if code, body := get(t, hs.URL+c.path, ""); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q, want %d with %q", c.path, code, body, c.code, c.want)
		}
	}
}
