package console

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/query"
)

// The console in a real browser: Debian's chromium, headless, driven over
// the DevTools protocol. CI installs chromium (.ci/run); elsewhere the test
// is skipped without it unless FLOWAUDIT_REQUIRE_CLICKHOUSE=1, which CI sets.

// chromiumPath is the browser the test drives.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("FLOWAUDIT_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	if os.Getenv("FLOWAUDIT_REQUIRE_CLICKHOUSE") == "1" {
		t.Fatal("chromium is not installed (apt-get install chromium; .ci/run installs it)")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// artifactDir is where the screenshots go: var/testdata-out/console in the
// repository (gitignored), kept after the test for people to look at.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("FLOWAUDIT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "var", "testdata-out", "console")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless chromium and what it reported: console errors,
// exceptions, and every request it made.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	errors   []string
	requests []string
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	b := &browser{}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx, chromedp.WithListener(b.event))
	t.Cleanup(func() { cancelB(); cancelA() })
	b.ctx = ctx
	if err := chromedp.Do(ctx, enable(log.Enable, cdp.Empty{}), enable(network.Enable, network.EnableParams{})); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return b
}

// enable is an action running a protocol command.
func enable[P any](cmd cdp.Command[P, cdp.Empty], params P) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, t, cmd, params)
		return chromedp.Void{}, err
	}
}

// event records what the browser reports (on the tab's reading loop: fast).
func (b *browser) event(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
			var args []string
			for _, a := range e.Args {
				args = append(args, string(a.Value))
			}
			b.errors = append(b.errors, "console."+string(e.Type)+": "+strings.Join(args, " "))
		}
	case *runtime.EventExceptionThrown:
		b.errors = append(b.errors, "exception: "+e.ExceptionDetails.Text)
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError {
			b.errors = append(b.errors, "log: "+e.Entry.Text+" "+e.Entry.URL)
		}
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, e.Request.URL)
	}
}

// drain returns and forgets what the browser reported so far.
func (b *browser) drain() (errs, reqs []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	errs, reqs = b.errors, b.requests
	b.errors, b.requests = nil, nil
	return errs, reqs
}

// checkClean fails on console errors and on requests to anything but the
// console itself (data: URLs are inline).
func (b *browser) checkClean(t *testing.T, pageName, origin string) {
	t.Helper()
	errs, reqs := b.drain()
	for _, e := range errs {
		t.Errorf("%s: browser reported an error: %s", pageName, e)
	}
	if len(reqs) == 0 {
		t.Errorf("%s: the browser made no request", pageName)
	}
	for _, r := range reqs {
		if !strings.HasPrefix(r, origin+"/") && !strings.HasPrefix(r, "data:") {
			t.Errorf("%s: external request %s", pageName, r)
		}
	}
}

func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	// Quality 100 is a (lossless) PNG of the whole page.
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(artifactDir(t), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

// text is the rendered text of the first element matching a CSS selector.
func (b *browser) text(t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (b *browser) location(t *testing.T) string {
	t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clickEdge clicks the middle of an edge's curve on the map, as a person
// would, with the mouse at the point the browser draws it.
func (b *browser) clickEdge(client, server string) error {
	sel := fmt.Sprintf(`#segment-map g.edge[data-client=%q][data-server=%q] path.hit`, client, server)
	js := fmt.Sprintf(`(() => { const p = document.querySelector(%q); p.scrollIntoView({block: "center"});
  const l = p.getTotalLength(); const q = p.getPointAtLength(l / 2); const m = p.getScreenCTM();
  return {X: q.x * m.a + q.y * m.c + m.e, Y: q.x * m.b + q.y * m.d + m.f}; })()`, sel)
	if err := chromedp.Do(b.ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		return err
	}
	pt, err := chromedp.Run(b.ctx, chromedp.Evaluate[struct{ X, Y float64 }](js))
	if err != nil {
		return err
	}
	return chromedp.Do(b.ctx, chromedp.MouseClickXY(pt.X, pt.Y))
}

func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a real browser")
	}
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0"})
	b := startBrowser(t)
	base := e.http.URL
	ctx := context.Background()
	hour := query.Window{From: t0, To: t0.Add(time.Hour)}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		// A step that waits for what never comes fails instead of hanging.
		ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	strs := func(js string) []string {
		t.Helper()
		v, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}

	// The listener hears the page: an error written on purpose is caught.
	do("probe page", chromedp.Navigate(base+"/reports"))
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](`console.error("probe")`)); err != nil && !errors.Is(err, chromedp.ErrJSUndefined) {
		t.Fatal(err)
	}
	do("probe wait", chromedp.WaitVisible(chromedp.CSS("main")))
	if errs, _ := b.drain(); len(errs) != 1 || !strings.Contains(errs[0], "probe") {
		t.Fatalf("the browser's console errors are not seen: %q", errs)
	}

	// The map shows exactly ClickHouse's segments and edges.
	do("/map", chromedp.Navigate(base+"/map?"+fixtureRange), chromedp.WaitVisible(chromedp.CSS("#segment-map")))
	nodes := strs(`[...document.querySelectorAll('#segment-map g.node')].map(n => n.dataset.segment)`)
	edges := strs(`[...document.querySelectorAll('#segment-map g.edge')].map(n => n.dataset.client + '>' + n.dataset.server + ':' + n.dataset.class + ':' + n.dataset.flows)`)
	stored, err := e.reader.SegmentEdges(ctx, hour, query.EdgeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	segs := map[string]bool{}
	var wantE []string
	for _, s := range stored {
		segs[s.Client], segs[s.Server] = true, true
		wantE = append(wantE, fmt.Sprintf("%s>%s:%s:%d", s.Client, s.Server, s.Class(), s.Flows))
	}
	var wantN []string
	for s := range segs {
		wantN = append(wantN, s)
	}
	sort.Strings(wantN)
	sort.Strings(nodes)
	sort.Strings(edges)
	sort.Strings(wantE)
	if d := cmp.Diff(wantN, nodes); d != "" || len(nodes) != 4 {
		t.Errorf("map nodes vs ClickHouse (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantE, edges); d != "" || len(edges) != 5 {
		t.Errorf("map edges vs ClickHouse (-want +got):\n%s", d)
	}
	b.screenshot(t, "map")
	b.checkClean(t, "/map", base)

	// Clicking the violating edge shows its ports, identities and rule.
	if err := b.clickEdge("web", "db"); err != nil {
		t.Fatalf("clicking web->db: %v", err)
	}
	do("edge detail after the click", chromedp.WaitVisible(chromedp.CSS(`#edge-detail[data-client="web"][data-server="db"]`)))
	loc := b.location(t)
	if u, _ := url.Parse(loc); u.Query().Get("client") != "web" || u.Query().Get("server") != "db" {
		t.Errorf("after the click the URL is %s, want client=web&server=db", loc)
	}
	for _, c := range []struct{ what, sel, want string }{
		{"ports", "#edge-ports tbody", "5432\ttcp\t2\t600 B\t2"},
		{"identities", "#edge-identities tbody", "bob\t2"},
		{"rules", "#edge-rules tbody", "-\tviolation\t-\tviolation\t2"},
		{"alerts", "#edge-alerts tbody", "web -> db 5432/tcp is not allowed"},
	} {
		if got := b.text(t, c.sel); !strings.Contains(got, c.want) {
			t.Errorf("edge web->db %s: %q lacks %q", c.what, got, c.want)
		}
	}
	b.screenshot(t, "map-edge-web-db")
	b.checkClean(t, "/map edge", base)

	// The allowed edge with a rule: its rule and identity.
	if err := b.clickEdge("web", "app"); err != nil {
		t.Fatalf("clicking web->app: %v", err)
	}
	do("edge detail web->app", chromedp.WaitVisible(chromedp.CSS(`#edge-detail[data-client="web"][data-server="app"]`)))
	ports, ids, rules := b.text(t, "#edge-ports tbody"), b.text(t, "#edge-identities tbody"), b.text(t, "#edge-rules tbody")
	if !strings.Contains(ports, "8080\ttcp\t4") || !strings.Contains(ids, "alice\t4") || !strings.Contains(rules, "web-to-app\tallowed\tweb-to-app\tallowed\t4") {
		t.Errorf("edge web->app: ports %q identities %q rules %q", ports, ids, rules)
	}
	b.checkClean(t, "/map edge 2", base)

	// Flows: a filter in the form changes the URL and the numbers, which
	// match ClickHouse's.
	do("/flows", chromedp.Navigate(base+"/flows?"+fixtureRange), chromedp.WaitVisible(chromedp.CSS("#flows-count")))
	before := b.text(t, "#flows-count")
	b.screenshot(t, "flows")
	b.checkClean(t, "/flows", base)
	do("/flows filter",
		chromedp.SetValue(chromedp.CSS("#f-port"), "5432"),
		chromedp.Click(chromedp.CSS("#f-apply")),
		chromedp.WaitVisible(chromedp.CSS(`input#f-port[value="5432"]`)))
	after := b.text(t, "#flows-count")
	loc = b.location(t)
	_, all, err := e.reader.Flows(ctx, hour, query.FlowFilter{}, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, n5432, err := e.reader.Flows(ctx, hour, query.FlowFilter{EdgeFilter: query.EdgeFilter{Port: 5432}}, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if all != 16 || n5432 != 6 {
		t.Fatalf("fixture: %d flows, %d on 5432, want 16 and 6", all, n5432)
	}
	if !strings.Contains(before, fmt.Sprintf("of %d", all)) || !strings.Contains(after, fmt.Sprintf("of %d", n5432)) {
		t.Errorf("flows count %q then %q after port=5432, want of %d then of %d", before, after, all, n5432)
	}
	if u, _ := url.Parse(loc); u.Query().Get("port") != "5432" || u.Query().Get("from") != t0.Format(time.RFC3339) {
		t.Errorf("after the filter the URL is %s, want port=5432 and the same range", loc)
	}
	// The shared URL shows the same view.
	do("shared URL", chromedp.Navigate(loc), chromedp.WaitVisible(chromedp.CSS("#flows-count")))
	if shared := b.text(t, "#flows-count"); shared != after {
		t.Errorf("opening the URL again: %q, want %q", shared, after)
	}
	b.screenshot(t, "flows-port-5432")
	b.checkClean(t, "/flows filtered", base)

	// The explorer: split by client identity, top 2, by form; the URL
	// carries the view and opening it again shows the same chart.
	do("explorer split",
		chromedp.Navigate(base+"/flows?"+fixtureRange),
		chromedp.SetValue(chromedp.CSS("#f-dim"), "client_identity"),
		chromedp.SetValue(chromedp.CSS("#f-top"), "2"),
		chromedp.Click(chromedp.CSS("#f-apply")),
		chromedp.WaitVisible(chromedp.CSS(`#series-legend tr[data-key="other"]`)))
	legend := b.text(t, "#series-legend tbody")
	loc = b.location(t)
	if u, _ := url.Parse(loc); u.Query().Get("dim") != "client_identity" || u.Query().Get("top") != "2" {
		t.Errorf("explorer URL %s lacks dim=client_identity&top=2", loc)
	}
	// (none) 6, then alice and svc-checkout tie at 4 (by name), other: bob 2.
	if want := "(none)\t6\t37.5 %\n\talice\t4\t25.0 %\n\tother\t6\t37.5 %"; !strings.Contains(legend, want) {
		t.Errorf("explorer legend %q lacks %q", legend, want)
	}
	bars := strs(`[...document.querySelectorAll('#series rect.bar')].map(r => r.dataset.key + '=' + r.dataset.value)`)
	sankey := strs(`[...document.querySelectorAll('#sankey g.snode')].map(n => n.dataset.stage + ':' + n.dataset.name + '=' + n.dataset.value)`)
	do("explorer shared URL", chromedp.Navigate(loc), chromedp.WaitVisible(chromedp.CSS("#sankey")))
	if again := b.text(t, "#series-legend tbody"); again != legend {
		t.Errorf("the explorer URL opened again: %q, want %q", again, legend)
	}
	if d := cmp.Diff(bars, strs(`[...document.querySelectorAll('#series rect.bar')].map(r => r.dataset.key + '=' + r.dataset.value)`)); d != "" || len(bars) == 0 {
		t.Errorf("bars differ on the shared URL:\n%s", d)
	}
	if d := cmp.Diff(sankey, strs(`[...document.querySelectorAll('#sankey g.snode')].map(n => n.dataset.stage + ':' + n.dataset.name + '=' + n.dataset.value)`)); d != "" || len(sankey) == 0 {
		t.Errorf("sankey differs on the shared URL:\n%s", d)
	}
	b.screenshot(t, "flows-explorer")
	b.checkClean(t, "/flows explorer", base)

	// Clicking a segment zooms into its workloads.
	do("map zoom", chromedp.Navigate(base+"/map?"+fixtureRange),
		chromedp.Click(chromedp.CSS(`#segment-map a.node-link[data-node="db"] circle`)),
		chromedp.WaitVisible(chromedp.CSS("#zoom")))
	if u, _ := url.Parse(b.location(t)); u.Query().Get("segment") != "db" {
		t.Errorf("after clicking db the URL is %s, want segment=db", b.location(t))
	}
	b.screenshot(t, "map-zoom-db")
	b.checkClean(t, "/map zoom", base)

	// Alerts: the list, then the detail by clicking.
	do("/alerts", chromedp.Navigate(base+"/alerts?"+fixtureRange), chromedp.WaitVisible(chromedp.CSS(`tr[data-id="a-web-db"]`)))
	b.screenshot(t, "alerts")
	b.checkClean(t, "/alerts", base)
	do("alert detail", chromedp.Click(chromedp.CSS(`tr[data-id="a-web-db"] a`)), chromedp.WaitVisible(chromedp.CSS("#evidence")))
	evidence := b.text(t, "#evidence")
	href, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS("#alert-flows"), "href"))
	if err != nil {
		t.Fatal(err)
	}
	loc = b.location(t)
	if !strings.HasSuffix(loc, "/alerts/a-web-db") || !strings.Contains(evidence, `"flows": 2`) || !strings.Contains(href.Value, "addr=10.1.0.6") {
		t.Errorf("alert detail at %s: evidence %q, flows link %q", loc, evidence, href.Value)
	}
	b.screenshot(t, "alert")
	b.checkClean(t, "/alerts/a-web-db", base)
	// Its flows link lands on exactly the alert's flows.
	do("the alert's flows", chromedp.Click(chromedp.CSS("#alert-flows")), chromedp.WaitVisible(chromedp.CSS("#flows-count")))
	if got := b.text(t, "#flows-count"); !strings.Contains(got, "of 2") {
		t.Errorf("the alert's flows: %q, want 2 flows", got)
	}
	b.checkClean(t, "alert flows", base)

	// Every other page loads cleanly.
	for _, p := range []struct{ path, wait, shot string }{
		{"/audit?" + fixtureRange, "#rules", "audit"},
		{"/identities?" + fixtureRange, "#identity-access", "identities"},
		{"/reports", "main", "reports"},
	} {
		do(p.path, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.wait)))
		b.screenshot(t, p.shot)
		b.checkClean(t, p.path, base)
	}
}
