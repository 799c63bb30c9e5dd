package simulate

import (
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/ingest/access/parser"
	"github.com/flowaudit/flowaudit/schemas"
)

// TestIdentityFormatsParse: every simulated identity-source line parses
// with the collector's parser into the event the generator says it is.
func TestIdentityFormatsParse(t *testing.T) {
	now := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	for _, f := range []AccessFormat{AccessOpenVPN, AccessRADIUS, AccessKerberos, AccessWindows, AccessDHCP} {
		p, err := parser.New(parser.Format(f))
		if err != nil {
			t.Fatal(err)
		}
		g := NewAccessGenerator(f, 1, func() time.Time { return now })
		starts, stops := 0, 0
		for range 40 {
			l := g.Next()
			var ev schemas.AccessEvent
			if err := p.Parse([]byte(l.Line), parser.Meta{Received: now}, &ev); err != nil {
				t.Fatalf("%s: %q: %v", f, l.Line, err)
			}
			if ev.User != l.User || ev.Action != l.Action || ev.Outcome.String() != l.Outcome {
				t.Errorf("%s: %q parsed as user %q action %q outcome %s, generator says %q %q %s", f, l.Line, ev.User, ev.Action, ev.Outcome, l.User, l.Action, l.Outcome)
			}
			if l.SrcAddr != "" && ev.SrcAddr.String() != l.SrcAddr {
				t.Errorf("%s: %q: src %s, want %s", f, l.Line, ev.SrcAddr, l.SrcAddr)
			}
			switch ev.Binding {
			case schemas.BindingStart:
				starts++
			case schemas.BindingStop:
				stops++
			}
		}
		if f != AccessKerberos && (starts < 30 || stops < 5) {
			t.Errorf("%s: %d starts, %d stops in 40 lines", f, starts, stops)
		}
	}
}
