package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
)

type accessRow struct {
	Source, User, Src, Action, Outcome, Host string
}

func accessRows(t *testing.T, ch *testutil.ClickHouseServer, where string) []accessRow {
	t.Helper()
	rows, err := ch.Conn(t).Query(context.Background(), "SELECT source, user, IPv6NumToString(src_addr), action, outcome, host FROM flowaudit.access_events WHERE "+where+" ORDER BY user, action")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []accessRow
	for rows.Next() {
		var r accessRow
		if err := rows.Scan(&r.Source, &r.User, &r.Src, &r.Action, &r.Outcome, &r.Host); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestAccessLogsEndToEnd has clients nobody here wrote — util-linux
// logger and curl — send sshd and nginx lines and NDJSON to "flowaudit
// run"; the rows in access_events carry the exact user, address and
// outcome, a junk line is dead-lettered and the listener keeps going.
func TestAccessLogsEndToEnd(t *testing.T) {
	logger, lerr := exec.LookPath("logger")
	curl, cerr := exec.LookPath("curl")
	if lerr != nil || cerr != nil {
		if testutil.RequireExternal() {
			t.Fatal("logger (util-linux) and curl are needed: apt-get install bsdutils curl")
		}
		t.Skip("logger or curl not installed")
	}
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{accessYAML: "    http_tokens: [s3cret]"})
	p.Start()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(logger, args...).CombinedOutput(); err != nil {
			t.Fatalf("logger %v: %v\n%s", args, err, out)
		}
	}
	udpHost, udpPort, _ := strings.Cut(p.SyslogUDP, ":")
	tcpHost, tcpPort, _ := strings.Cut(p.SyslogTCP, ":")
	run("-n", udpHost, "-P", udpPort, "--udp", "--rfc3164", "-t", "sshd", "--id=4242",
		"Accepted publickey for alice from 10.1.2.3 port 52222 ssh2: ED25519 SHA256:abc")
	run("-n", tcpHost, "-P", tcpPort, "--tcp", "--rfc5424", "-t", "sshd",
		"Failed password for invalid user admin from 2001:db8::66 port 40000 ssh2")
	run("-n", tcpHost, "-P", tcpPort, "--tcp", "--octet-count", "-t", "nginx",
		`198.51.100.7 - bob [23/Nov/2026:08:00:00 +0000] "GET /admin HTTP/1.1" 403 153 "-" "curl/8.0"`)
	run("-n", udpHost, "-P", udpPort, "--udp", "--rfc3164", "-t", "sshd", "this is not an sshd line at all")
	run("-n", udpHost, "-P", udpPort, "--udp", "--rfc3164", "-t", "sshd",
		"pam_unix(sshd:session): session closed for user alice")

	// curl: without the token 401, with it 2xx.
	body := `{"time":"2026-11-23T08:00:00Z","source":"json","user":"carol","src_addr":"10.3.0.9","action":"login","outcome":"success"}` + "\n"
	code := func(args ...string) string {
		out, err := exec.Command(curl, append([]string{"-s", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", body,
			"http://" + p.HTTPAddr + "/v1/access"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		return string(out)
	}
	if got := code(); got != "401" {
		t.Errorf("POST without token: HTTP %s, want 401", got)
	}
	if got := code("-H", "Authorization: Bearer s3cret"); got[0] != '2' {
		t.Errorf("POST with token: HTTP %s, want 2xx", got)
	}

	if got := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.access_events", 5, 60*time.Second); got != 5 {
		t.Fatalf("access_events rows = %d, want 5", got)
	}
	got := accessRows(t, ch, "1")
	for i := range got {
		got[i].Host = "" // the logger's host name differs per machine
	}
	want := []accessRow{
		{Source: "sshd", User: "admin", Src: "2001:db8::66", Action: "login", Outcome: "failure"},
		{Source: "sshd", User: "alice", Src: "::ffff:10.1.2.3", Action: "login", Outcome: "success"},
		{Source: "sshd", User: "alice", Src: "::", Action: "session_close", Outcome: "success"},
		{Source: "nginx", User: "bob", Src: "::ffff:198.51.100.7", Action: "GET", Outcome: "denied"},
		{Source: "json", User: "carol", Src: "::ffff:10.3.0.9", Action: "login", Outcome: "success"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("access_events (-got +want):\n%s", diff)
	}
	if n := p.Metric("flowaudit_access_dead_letters_total"); n < 1 {
		t.Errorf("dead letters = %v, want the junk sshd line", n)
	}
}

// TestSimulatedAccessLogs drives "flowaudit run" with the access-log
// simulator in every format over syslog and HTTP; ClickHouse holds exactly
// what the simulator says it sent, per outcome.
func TestSimulatedAccessLogs(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{})
	p.Start()
	want := map[string]uint64{}
	var total uint64
	for i, tc := range []struct {
		format simulate.AccessFormat
		target string
		source string
	}{
		{simulate.AccessSSHD, "udp://" + p.SyslogUDP, "sshd"},
		{simulate.AccessNginx, "tcp://" + p.SyslogTCP, "nginx"},
		{simulate.AccessK8sAudit, "http://" + p.HTTPAddr, "k8s_audit"},
		{simulate.AccessGateway, "http://" + p.HTTPAddr, "gateway"},
	} {
		tot, err := simulate.RunAccess(context.Background(), simulate.AccessConfig{Target: tc.target, Format: tc.format, Rate: 2000, Count: 300, Seed: int64(i + 1)})
		if err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		for outcome, n := range tot.ByOutcome {
			want[tc.source+"/"+outcome] += n
		}
		total += tot.Lines
	}
	if got := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.access_events", total, 60*time.Second); got != total {
		t.Fatalf("access_events rows = %d, want %d", got, total)
	}
	rows, err := ch.Conn(t).Query(context.Background(), "SELECT source, outcome, toUInt64(count()) FROM flowaudit.access_events GROUP BY source, outcome")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for rows.Next() {
		var s, o string
		var n uint64
		if err := rows.Scan(&s, &o, &n); err != nil {
			t.Fatal(err)
		}
		got[s+"/"+o] = n
	}
	rows.Close()
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("rows per source/outcome (-got +want):\n%s", diff)
	}
	if n := p.Metric("flowaudit_access_dead_letters_total"); n != 0 {
		t.Errorf("dead letters = %v, want 0: the simulator writes only valid lines", n)
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/v1/health", p.HTTPAddr))
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /v1/health = %v, %v", resp, err)
	}
}
