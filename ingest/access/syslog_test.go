package access_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// hostPort strips the scheme of a SyslogAddrs entry.
func hostPort(t *testing.T, a string) string {
	t.Helper()
	_, hp, ok := strings.Cut(a, "://")
	if !ok {
		t.Fatalf("address %q has no scheme", a)
	}
	return hp
}

func accepted(user, src string, port uint16) schemas.AccessEvent {
	return schemas.AccessEvent{
		Source: "sshd", User: user, SrcAddr: addr(src), SrcPort: port,
		Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess, AuthMethod: "password",
	}
}

func TestSyslogUDPRFC3164(t *testing.T) {
	h := newHarness(t)
	c := h.start(testConfiguration())
	addrs := c.SyslogAddrs()
	if len(addrs) != 2 || !strings.HasPrefix(addrs[0], "udp://127.0.0.1:") || !strings.HasPrefix(addrs[1], "tcp://127.0.0.1:") {
		t.Fatalf("SyslogAddrs() = %v, want udp:// then tcp:// on 127.0.0.1", addrs)
	}
	conn, err := net.Dial("udp", hostPort(t, addrs[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// RFC 3164 has neither year nor zone: an hour ago in UTC (the
	// default timezone) is dated exactly.
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	msg := fmt.Sprintf("<38>%s bastion sshd[4242]: Accepted password for alice from 10.1.2.3 port 52222 ssh2\n", ts.Format(time.Stamp))
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	h.wait(1, 0)
	want := accepted("alice", "10.1.2.3", 52222)
	want.Time = uint64(ts.UnixNano())
	want.Host = "bastion"
	want.PeerAddr, want.Listener = addr("127.0.0.1"), "udp://127.0.0.1:0"
	if diff := cmp.Diff(checkReceived(t, h.events), []schemas.AccessEvent{want}); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	if a := addr("10.1.2.3"); !bytes.Equal(h.keys[0], a[:]) {
		t.Errorf("record key = %x, want the 16-byte source address %x", h.keys[0], a[:])
	}
	waitMetric(t, h.r, "flowaudit_access_produced_total", nil, 1)
	for name, labels := range map[string]map[string]string{
		"flowaudit_access_lines_total":  {"listener": "udp://127.0.0.1:0", "format": "sshd"},
		"flowaudit_access_events_total": {"format": "sshd", "outcome": "success"},
	} {
		if got := metricValue(t, h.r, name, labels); got != 1 {
			t.Errorf("%s%v = %v, want 1", name, labels, got)
		}
	}
}

func TestSyslogTCPFraming(t *testing.T) {
	h := newHarness(t)
	c := h.start(testConfiguration())
	conn, err := net.Dial("tcp", hostPort(t, c.SyslogAddrs()[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	line := func(user string) string {
		return "<38>Jan  2 03:04:05 bastion sshd[1]: Accepted password for " + user + " from 10.0.0.1 port 1000 ssh2"
	}
	rfc5424 := "<38>1 2024-01-02T03:04:05.123Z bastion sshd 4242 - - Accepted password for dave from 2001:db8::7 port 40000 ssh2"
	octet := func(m string) string { return fmt.Sprintf("%d %s", len(m), m) }
	carol := line("carol")
	erin := octet(line("erin"))
	writes := []string{
		// Several newline-framed messages in one write, CRLF tolerated,
		// the third split across writes.
		line("alice") + "\n" + line("bob") + "\r\n" + carol[:20],
		carol[20:] + "\n",
		// Octet counting, back to back, the second split inside its
		// length.
		octet(rfc5424) + erin[:1],
		erin[1:],
		// A trailing LF counted in the frame is dropped; blank lines
		// between frames are skipped; then newline framing again.
		octet(line("frank")+"\n") + "\n" + line("grace") + "\n",
	}
	for _, w := range writes {
		if _, err := conn.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // separate segments
	}
	h.wait(7, 0)
	h.settle()
	if diff := cmp.Diff(users(h.events), []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace"}); diff != "" {
		t.Fatalf("users in order (-got +want):\n%s", diff)
	}
	want := accepted("dave", "2001:db8::7", 40000)
	want.Time = uint64(time.Date(2024, 1, 2, 3, 4, 5, 123e6, time.UTC).UnixNano())
	want.Host = "bastion"
	want.PeerAddr, want.Listener = addr("127.0.0.1"), "tcp://127.0.0.1:0"
	if diff := cmp.Diff(checkReceived(t, h.events[3:4])[0], want); diff != "" {
		t.Errorf("RFC 5424 event (-got +want):\n%s", diff)
	}
	if len(h.dead) != 0 {
		t.Errorf("dead letters %v, want none", reasons(h.dead))
	}
	if got := metricValue(t, h.r, "flowaudit_access_tcp_connections", nil); got != 1 {
		t.Errorf("flowaudit_access_tcp_connections = %v, want 1", got)
	}
}

func TestSyslogRejectsAndKeepsGoing(t *testing.T) {
	h := newHarness(t)
	cfg := testConfiguration()
	cfg.MaxLineBytes = 256
	c := h.start(cfg)
	good := func(user string) string {
		return "<38>Jan  2 03:04:05 bastion sshd[1]: Accepted password for " + user + " from 10.0.0.1 port 1000 ssh2"
	}
	junk := "this is junk"
	unknown := "<13>Jan  2 03:04:05 bastion myapp: hello world"
	long := "<38>Jan  2 03:04:05 bastion sshd[1]: " + strings.Repeat("x", 300)
	longOctet := "<38>Jan  2 03:04:05 bastion sshd[1]: " + strings.Repeat("y", 400)

	conn, err := net.Dial("tcp", hostPort(t, c.SyslogAddrs()[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream := junk + "\n" + good("grace") + "\n" + unknown + "\n" + long + "\n" + good("heidi") + "\n" +
		fmt.Sprintf("%d %s", len(longOctet), longOctet) + good("ivan") + "\n"
	if _, err := conn.Write([]byte(stream)); err != nil {
		t.Fatal(err)
	}
	h.wait(3, 4)

	udp, err := net.Dial("udp", hostPort(t, c.SyslogAddrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, m := range []string{"garbage", long, good("judy")} {
		if _, err := udp.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	h.wait(4, 6)
	h.settle()

	if diff := cmp.Diff(users(h.events), []string{"grace", "heidi", "ivan", "judy"}); diff != "" {
		t.Errorf("users in order (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(reasons(h.dead), []string{"no_match", "unknown_app", "too_long", "too_long", "no_match", "too_long"}); diff != "" {
		t.Fatalf("dead-letter reasons (-got +want):\n%s", diff)
	}
	type letter struct {
		Stage, Reason string
		Payload       string
	}
	var got []letter
	for i, dl := range h.dead {
		got = append(got, letter{dl.Stage, dl.Reason, string(dl.Payload)})
		proto := "tcp://127.0.0.1:0 from 127.0.0.1:"
		if i >= 4 {
			proto = "udp://127.0.0.1:0 from 127.0.0.1:"
		}
		if !strings.HasPrefix(dl.Source, proto) {
			t.Errorf("dead letter %d source = %q, want %q…", i, dl.Source, proto)
		}
		if dl.Error == "" || dl.Time == 0 {
			t.Errorf("dead letter %d: error %q, time %d; want both", i, dl.Error, dl.Time)
		}
	}
	want := []letter{
		{"ingest.access", "no_match", junk},
		{"ingest.access", "unknown_app", unknown},
		{"ingest.access", "too_long", long[:256]},
		{"ingest.access", "too_long", longOctet[:256]},
		{"ingest.access", "no_match", "garbage"},
		{"ingest.access", "too_long", long[:256]},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("dead letters (-got +want):\n%s", diff)
	}
	waitMetric(t, h.r, "flowaudit_access_dead_letters_total", nil, 6)
	for _, m := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"format": "syslog", "reason": "no_match"}, 2},
		{map[string]string{"format": "syslog", "reason": "unknown_app"}, 1},
		{map[string]string{"format": "syslog", "reason": "too_long"}, 3},
	} {
		if got := metricValue(t, h.r, "flowaudit_access_rejected_total", m.labels); got != m.want {
			t.Errorf("flowaudit_access_rejected_total%v = %v, want %v", m.labels, got, m.want)
		}
	}
}

// TestLoggerCrossCheck sends with util-linux logger, a syslog client
// nobody here wrote, over every transport and framing it has.
func TestLoggerCrossCheck(t *testing.T) {
	logger, err := exec.LookPath("logger")
	if err != nil {
		t.Skip("util-linux logger is not installed")
	}
	h := newHarness(t)
	c := h.start(testConfiguration())
	_, udpPort, _ := net.SplitHostPort(hostPort(t, c.SyslogAddrs()[0]))
	_, tcpPort, _ := net.SplitHostPort(hostPort(t, c.SyslogAddrs()[1]))
	send := func(port string, args ...string) {
		t.Helper()
		args = append([]string{"-n", "127.0.0.1", "-P", port}, args...)
		if out, err := exec.Command(logger, args...).CombinedOutput(); err != nil {
			t.Fatalf("logger %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	send(udpPort, "--udp", "--rfc3164", "-t", "sshd", "Accepted password for alice from 10.1.2.3 port 52222 ssh2")
	h.wait(1, 0)
	send(tcpPort, "--tcp", "--rfc5424", "-t", "sshd", "Failed password for invalid user bob from 2001:db8::9 port 40001 ssh2")
	h.wait(2, 0)
	send(tcpPort, "--tcp", "--octet-count", "--rfc5424", "-t", "sshd", "Accepted publickey for carol from 10.9.8.7 port 1234 ssh2: ED25519 SHA256:abc")
	h.wait(3, 0)
	send(tcpPort, "--tcp", "--rfc3164", "-t", "nginx", `203.0.113.5 - dave [10/Oct/2024:13:55:36 +0000] "GET /admin HTTP/1.1" 403 153 "-" "curl/8.0"`)
	h.wait(4, 0)
	send(udpPort, "--udp", "--rfc3164", "-t", "junkapp", "garbage that is no access log")
	h.wait(4, 1)
	send(udpPort, "--udp", "--rfc5424", "-t", "sshd", "Accepted password for erin from 10.1.2.4 port 52223 ssh2")
	h.wait(5, 1)
	h.settle()

	type row struct {
		Source, User string
		SrcAddr      schemas.Addr
		SrcPort      uint16
		Action       string
		Outcome      string
	}
	var got []row
	for _, ev := range h.events {
		got = append(got, row{ev.Source, ev.User, ev.SrcAddr, ev.SrcPort, ev.Action, ev.Outcome.String()})
		if ev.Host == "" || ev.Time == 0 {
			t.Errorf("%s: host %q time %d, want both from logger's header", ev.User, ev.Host, ev.Time)
		}
	}
	want := []row{
		{"sshd", "alice", addr("10.1.2.3"), 52222, "login", "success"},
		{"sshd", "bob", addr("2001:db8::9"), 40001, "login", "failure"},
		{"sshd", "carol", addr("10.9.8.7"), 1234, "login", "success"},
		{"nginx", "dave", addr("203.0.113.5"), 0, "GET", "denied"},
		{"sshd", "erin", addr("10.1.2.4"), 52223, "login", "success"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("events from logger (-got +want):\n%s", diff)
	}
	if len(h.dead) != 1 || h.dead[0].Reason != "unknown_app" || !bytes.Contains(h.dead[0].Payload, []byte("garbage that is no access log")) {
		t.Errorf("dead letters = %v, want one unknown_app with the junk line", h.dead)
	}
	if host, _ := os.Hostname(); host != "" && h.events[0].Host != host && !strings.HasPrefix(h.events[0].Host, host+".") {
		t.Errorf("RFC 3164 host = %q, want this host (%q)", h.events[0].Host, host)
	}
}

// TestSyslogApps: syslog_apps maps a site tag to a format, and a tag
// without a format whose message is a web access log is taken as nginx.
func TestSyslogApps(t *testing.T) {
	h := newHarness(t)
	cfg := testConfiguration()
	cfg.SyslogApps = map[string]string{"web-front": "apache"}
	c := h.start(cfg)
	conn, err := net.Dial("udp", hostPort(t, c.SyslogAddrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	web := `203.0.113.5 - %s [10/Oct/2024:13:55:36 +0000] "GET /admin HTTP/1.1" 401 153 "-" "curl/8.0"`
	for _, m := range []string{
		"<142>Oct 10 13:55:36 lb1 web-front: " + fmt.Sprintf(web, "alice"),
		"<142>Oct 10 13:55:36 lb1 site42: " + fmt.Sprintf(web, "bob"),
	} {
		if _, err := conn.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // keep the order
	}
	h.wait(2, 0)
	type row struct{ Source, Host, User, Outcome string }
	var got []row
	for _, ev := range h.events {
		got = append(got, row{ev.Source, ev.Host, ev.User, ev.Outcome.String()})
	}
	want := []row{{"apache", "lb1", "alice", "denied"}, {"nginx", "lb1", "bob", "denied"}}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}
