package console

import (
	"net/url"
	"testing"
	"time"
)

// FuzzParseParams: any query string a browser sends either fails with an
// error naming a parameter or gives parameters whose URL parses back to
// the same view.
func FuzzParseParams(f *testing.F) {
	for _, s := range []string{"", "range=1h", "from=2026-11-30T10:00:00Z&to=2026-11-30T11:00:00Z&port=5432&verdict=violation",
		"dim=client_identity&top=3&metric=bytes", "segment=db&group=pci&client=web&server=db", "page=2&addr=10.1.0.5&exporter=::1",
		"range=7d&from=x", "top=999", "port=0"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := parseParams(q, now, "24h")
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		again, err := url.ParseQuery(p.flowsQuery())
		if err != nil {
			t.Fatalf("the view's own URL does not parse: %v", err)
		}
		p2, err := parseParams(again, now, "24h")
		if err != nil {
			t.Fatalf("the view's own URL %q is refused: %v", p.flowsQuery(), err)
		}
		if p2.window != p.window || p2.filter != p.filter || p2.Dim != p.Dim || p2.Top != p.Top || p2.Metric != p.Metric {
			t.Fatalf("round trip of %q changed the view: %+v -> %+v", raw, p, p2)
		}
	})
}
