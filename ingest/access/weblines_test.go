package access_test

import (
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// TestWebLinesShiftedFieldsDeadLettered sends nginx lines over syslog:
// proxied requests with users, a Unix-socket and a host-name client, and
// lines whose fields are shifted (the junk users the old parser took).
// The shifted ones are dead-lettered with their reason and counted, never
// produced as events; the others carry the first entry of their
// X-Forwarded-For chain, or no address. (cmd/flowaudit's
// TestWebLogIdentity shows what the enricher binds from them.)
func TestWebLinesShiftedFieldsDeadLettered(t *testing.T) {
	h := newHarness(t)
	c := h.start(testConfiguration())
	conn, err := net.Dial("tcp", hostPort(t, c.SyslogAddrs()[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const when = "[11/Mar/2024:08:00:00 +0000]"
	good := []string{
		`10.1.0.5, 10.0.0.1 - alice ` + when + ` "GET /app HTTP/1.1" 200 10 "-" "agent/1"`,
		`"10.1.0.6" 10.0.0.1 - bob ` + when + ` "GET /app HTTP/1.1" 200 10 "-" "agent/1"`,
		`unix: - carol ` + when + ` "GET /app HTTP/1.1" 200 10 "-" "agent/1"`,
		`localhost - dave ` + when + ` "GET /app HTTP/1.1" 200 10 "-" "agent/1"`,
		`10.1.0.7 - erin ` + when + ` "GET /admin HTTP/1.1" 403 10 "-" "agent/1"`,
	}
	shifted := []string{
		`10.1.0.8 10.1.0.9 - ` + when + ` "GET /a HTTP/1.1" 200 10 "-" "agent/1"`,                  // an address where IDENT belongs
		`10.1.0.8 - 10.1.0.9 ` + when + ` "GET /a HTTP/1.1" 200 10 "-" "agent/1"`,                  // an address as the user
		`10.1.0.8 - frank smith ` + when + ` "GET /a HTTP/1.1" 200 10 "-" "agent/1"`,               // a user with a space
		`a.example b.example c.example 10.1.0.8 - - ` + when + ` "GET /a HTTP/1.1" 200 10 "-" "x"`, // 4 address fields
	}
	var msgs strings.Builder
	for _, l := range append(append([]string(nil), good...), shifted...) {
		msgs.WriteString("<190>Mar 11 08:00:00 web-1 nginx: " + l + "\n")
	}
	if _, err := conn.Write([]byte(msgs.String())); err != nil {
		t.Fatal(err)
	}
	h.wait(len(good), len(shifted))
	h.settle()
	if diff := cmp.Diff(reasons(h.dead), []string{"bad_user", "bad_user", "bad_user", "bad_address"}); diff != "" {
		t.Errorf("dead-letter reasons (-got +want):\n%s", diff)
	}
	for i, dl := range h.dead {
		if !strings.Contains(string(dl.Payload), shifted[i]) {
			t.Errorf("dead letter %d payload %q, want the line %q", i, dl.Payload, shifted[i])
		}
	}
	waitMetric(t, h.r, "flowaudit_access_rejected_total", map[string]string{"format": "nginx", "reason": "bad_user"}, 3)
	waitMetric(t, h.r, "flowaudit_access_rejected_total", map[string]string{"format": "nginx", "reason": "bad_address"}, 1)

	type got struct{ User, Src, XFF, Outcome string }
	var evs []got
	for _, ev := range h.events {
		g := got{User: ev.User, XFF: ev.ForwardedFor, Outcome: ev.Outcome.String()}
		if ev.SrcAddr != (schemas.Addr{}) {
			g.Src = ev.SrcAddr.String()
		}
		evs = append(evs, g)
	}
	want := []got{
		{"alice", "10.1.0.5", "10.1.0.5, 10.0.0.1", "success"},
		{"bob", "10.1.0.6", "10.1.0.6, 10.0.0.1", "success"},
		{"carol", "", "", "success"},
		{"dave", "", "", "success"},
		{"erin", "10.1.0.7", "", "denied"},
	}
	if diff := cmp.Diff(evs, want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}
