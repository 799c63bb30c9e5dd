package console

import (
	"net/url"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/query"
)

// TestRangeWindows: presets from 6h end at the next whole hour and shorter
// ones at the next whole minute (now itself when on one), so the pages
// read the hourly and the per-minute rollups.
func TestRangeWindows(t *testing.T) {
	at := func(h, m, s int) time.Time { return time.Date(2026, 11, 30, h, m, s, 0, time.UTC) }
	for _, c := range []struct {
		rng  string
		now  time.Time
		want query.Window
	}{
		{"1h", at(10, 17, 23), query.Window{From: at(9, 18, 0), To: at(10, 18, 0)}},
		{"1h", at(10, 17, 0), query.Window{From: at(9, 17, 0), To: at(10, 17, 0)}},
		{"6h", at(10, 17, 23), query.Window{From: at(5, 0, 0), To: at(11, 0, 0)}},
		{"24h", at(10, 0, 0), query.Window{From: at(10, 0, 0).Add(-23 * time.Hour), To: at(11, 0, 0)}},
	} {
		p, err := parseParams(url.Values{"range": {c.rng}}, c.now, "24h")
		if err != nil {
			t.Fatal(err)
		}
		if p.window != c.want {
			t.Errorf("range=%s at %s: window %v to %v, want %v to %v", c.rng, c.now.Format(time.TimeOnly),
				p.window.From, p.window.To, c.want.From, c.want.To)
		}
	}
}
