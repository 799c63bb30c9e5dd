package parser

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

func addr(s string) schemas.Addr { return schemas.AddrFromNetip(netip.MustParseAddr(s)) }

func ns(s string) uint64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return uint64(t.UnixNano())
}

// TestParseExamples spells out whole events, independently of the golden
// files, for one representative line of each format.
func TestParseExamples(t *testing.T) {
	recv := ns("2024-03-10T12:00:00Z")
	cases := []struct {
		name   string
		format Format
		line   string
		want   schemas.AccessEvent
	}{
		{
			name: "sshd accepted", format: FormatSSHD,
			line: "Accepted publickey for alice from 2001:db8::7 port 51234 ssh2: ED25519 SHA256:abc",
			want: schemas.AccessEvent{
				Time: recv, Received: recv, Source: "sshd", Host: "collector-1", User: "alice",
				SrcAddr: addr("2001:db8::7"), SrcPort: 51234, Action: schemas.ActionLogin,
				Outcome: schemas.OutcomeSuccess, AuthMethod: "publickey",
			},
		},
		{
			name: "sshd auth.log line", format: FormatSSHD,
			line: "Mar 10 11:00:00 bastion sshd[1]: Failed password for invalid user x y from 192.0.2.1 port 22 ssh2",
			want: schemas.AccessEvent{
				Time: ns("2024-03-10T11:00:00Z"), Received: recv, Source: "sshd", Host: "bastion", User: "x y",
				SrcAddr: addr("192.0.2.1"), SrcPort: 22, Action: schemas.ActionLogin,
				Outcome: schemas.OutcomeFailure, AuthMethod: "password",
			},
		},
		{
			name: "nginx combined", format: FormatNginx,
			line: `192.0.2.7 - bob [10/Mar/2024:13:00:00 +0100] "GET /a/b?c=d HTTP/1.1" 403 12 "-" "ua/1"`,
			want: schemas.AccessEvent{
				Time: ns("2024-03-10T12:00:00Z"), Received: recv, Source: "nginx", Host: "collector-1", User: "bob",
				SrcAddr: addr("192.0.2.7"), Resource: "/a/b", Action: "GET", Outcome: schemas.OutcomeDenied,
				Status: 403, UserAgent: "ua/1",
			},
		},
		{
			name: "apache common", format: FormatApache,
			line: `192.0.2.7 - - [10/Mar/2024:12:00:00 +0000] "POST /x HTTP/1.0" 500 -`,
			want: schemas.AccessEvent{
				Time: ns("2024-03-10T12:00:00Z"), Received: recv, Source: "apache", Host: "collector-1",
				SrcAddr: addr("192.0.2.7"), Resource: "/x", Action: "POST", Outcome: schemas.OutcomeFailure, Status: 500,
			},
		},
		{
			name: "k8s forbid annotation", format: FormatK8sAudit,
			line: `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","stage":"ResponseComplete","verb":"delete",` +
				`"user":{"username":"u"},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"pods","namespace":"ns","name":"p"},` +
				`"responseStatus":{"code":200},"stageTimestamp":"2024-03-10T11:00:00.000001Z","annotations":{"authorization.k8s.io/decision":"forbid"}}`,
			want: schemas.AccessEvent{
				Time: ns("2024-03-10T11:00:00.000001Z"), Received: recv, Source: "k8s_audit", Host: "collector-1", User: "u",
				SrcAddr: addr("10.0.0.1"), Resource: "ns/pods/p", Action: "delete", Outcome: schemas.OutcomeDenied,
				SessionID: "a1", Status: 200,
			},
		},
		{
			name: "gateway", format: FormatGateway,
			line: `{"time":"2024-03-10T11:00:00Z","user":"a","src_addr":"192.0.2.9:4000","target":"db:5432","protocol":"postgres",` +
				`"database":"orders","verb":"session.start","status":"ok","session_id":"s"}`,
			want: schemas.AccessEvent{
				Time: ns("2024-03-10T11:00:00Z"), Received: recv, Source: "gateway", Host: "collector-1", User: "a",
				SrcAddr: addr("192.0.2.9"), SrcPort: 4000, DstHost: "db", DstPort: 5432, Resource: "postgres://db:5432/orders",
				Action: schemas.ActionSessionOpen, Outcome: schemas.OutcomeSuccess, SessionID: "s",
			},
		},
		{
			name: "json default mapping", format: FormatJSON,
			line: `{"time":1710068400,"user":"a","src_addr":"192.0.2.9","action":"login","outcome":"ACCEPTED"}`,
			want: schemas.AccessEvent{
				Time: ns("2024-03-10T11:00:00Z"), Received: recv, Source: "json", Host: "collector-1", User: "a",
				SrcAddr: addr("192.0.2.9"), Action: schemas.ActionLogin, Outcome: schemas.OutcomeSuccess,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.format)
			if err != nil {
				t.Fatal(err)
			}
			// Start from a dirty event: Parse must overwrite every field.
			got := schemas.AccessEvent{User: "stale", DstPort: 1, SessionID: "stale", Status: 9}
			if err := p.Parse([]byte(tc.line), testMeta, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range formats {
		got, err := ParseFormat(string(f))
		if err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %q, %v", f, got, err)
		}
		if _, err := New(f); err != nil {
			t.Errorf("New(%q): %v", f, err)
		}
	}
	_, err := ParseFormat("syslog")
	if err == nil || !strings.Contains(err.Error(), "sshd, nginx, apache, k8s_audit, gateway, json") {
		t.Errorf("ParseFormat(syslog) error = %v, want the valid names listed", err)
	}
	if _, err := New("bogus"); err == nil {
		t.Error("New(bogus) succeeded")
	}
}

func TestNewOptions(t *testing.T) {
	cases := []struct {
		name    string
		format  Format
		mapping JSONMapping
		wantErr string
	}{
		{name: "default", format: FormatJSON, mapping: DefaultJSONMapping()},
		{name: "mapping on sshd", format: FormatSSHD, mapping: DefaultJSONMapping(), wantErr: "only"},
		{name: "nothing mapped", format: FormatJSON, mapping: JSONMapping{Time: "t"}, wantErr: "at least one"},
		{name: "empty path element", format: FormatJSON, mapping: JSONMapping{User: "a..b"}, wantErr: "empty path"},
		{
			name: "value in two lists", format: FormatJSON,
			mapping: JSONMapping{User: "u", SuccessValues: []string{"OK"}, FailureValues: []string{"ok"}}, wantErr: "twice",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.format, WithJSONMapping(tc.mapping))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestFormatForApp(t *testing.T) {
	cases := []struct {
		app  string
		want Format
		ok   bool
	}{
		{"sshd", FormatSSHD, true},
		{"sshd-session", FormatSSHD, true},
		{"nginx", FormatNginx, true},
		{"nginx_access", FormatNginx, true},
		{"apache2", FormatApache, true},
		{"httpd", FormatApache, true},
		{"apache", FormatApache, true},
		{"kube-apiserver-audit", FormatK8sAudit, true},
		{"k8s_audit", FormatK8sAudit, true},
		{"gateway", FormatGateway, true},
		{"Teleport", FormatGateway, true},
		{"boundary", FormatGateway, true},
		{"CRON", "", false},
		{"", "", false},
	}
	for _, tc := range cases {
		got, ok := FormatForApp(tc.app)
		if got != tc.want || ok != tc.ok {
			t.Errorf("FormatForApp(%q) = %q, %v; want %q, %v", tc.app, got, ok, tc.want, tc.ok)
		}
	}
}

func TestTooLong(t *testing.T) {
	line := []byte(strings.Repeat("a", MaxLineLength+1))
	for _, f := range formats {
		p, _ := New(f)
		var ev schemas.AccessEvent
		var pe *ParseError
		if err := p.Parse(line, testMeta, &ev); !errors.As(err, &pe) || pe.Reason != ReasonTooLong || pe.Format != f {
			t.Errorf("%s: error = %v, want too_long", f, err)
		}
	}
	var m SyslogMessage
	var pe *ParseError
	if err := ParseSyslog(line, time.Now(), nil, &m); !errors.As(err, &pe) || pe.Reason != ReasonTooLong || pe.Format != FormatSyslog {
		t.Errorf("syslog: error = %v, want too_long", err)
	}
}

func TestParseErrorMessage(t *testing.T) {
	p, _ := New(FormatNginx)
	var ev schemas.AccessEvent
	err := p.Parse([]byte("junk"), testMeta, &ev)
	if got, want := err.Error(), "parse nginx: no_match: no [time] field"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, errWebNoTime) {
		t.Error("Unwrap does not reach the cause")
	}
}

// TestConcurrentUse: one Parser shared by goroutines (as the listeners
// share it) gives every goroutine the events a lone caller gets, line by
// line; run with -race it also shows no shared mutable state.
func TestConcurrentUse(t *testing.T) {
	lines := testLines(t, "sshd.log")
	p, _ := New(FormatSSHD)
	type result struct {
		ev  schemas.AccessEvent
		err string
	}
	parseAll := func() []result {
		out := make([]result, len(lines))
		for i, l := range lines {
			var ev schemas.AccessEvent
			if err := p.Parse([]byte(l), testMeta, &ev); err != nil {
				out[i].err = err.Error()
			}
			out[i].ev = ev
		}
		return out
	}
	want := parseAll()
	parsed := 0
	for _, r := range want {
		if r.err == "" {
			parsed++
		}
	}
	if parsed == 0 {
		t.Fatal("no line of sshd.log parsed: the comparison would prove nothing")
	}
	const workers = 4
	got := make([][]result, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				got[w] = parseAll()
			}
		}()
	}
	wg.Wait()
	for w := range workers {
		if diff := cmp.Diff(got[w], want, cmp.AllowUnexported(result{})); diff != "" {
			t.Errorf("goroutine %d parsed differently from a lone caller (-got +want):\n%s", w, diff)
		}
	}
}

func TestMetaDefaults(t *testing.T) {
	// A zero Meta: no receive time, so Time stays 0 for sshd messages.
	p, _ := New(FormatSSHD)
	var ev schemas.AccessEvent
	if err := p.Parse([]byte("Accepted password for a from 192.0.2.1 port 1 ssh2"), Meta{}, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Time != 0 || ev.Received != 0 || ev.Host != "" {
		t.Errorf("zero Meta gave Time %d Received %d Host %q", ev.Time, ev.Received, ev.Host)
	}
}

func TestSSHDAuthLogYear(t *testing.T) {
	// An auth.log line from Dec 31 read on Jan 1 belongs to the previous year,
	// in the zone of Meta.Location.
	loc := time.FixedZone("EST", -5*3600)
	meta := Meta{Received: time.Date(2025, 1, 1, 5, 0, 30, 0, time.UTC), Location: loc}
	p, _ := New(FormatSSHD)
	var ev schemas.AccessEvent
	if err := p.Parse([]byte("Dec 31 23:59:59 h sshd[1]: Accepted password for a from 192.0.2.1 port 1 ssh2"), meta, &ev); err != nil {
		t.Fatal(err)
	}
	if got, want := ev.Time, ns("2025-01-01T04:59:59Z"); got != want {
		t.Errorf("Time = %s, want %s", time.Unix(0, int64(got)).UTC(), time.Unix(0, int64(want)).UTC())
	}
}

func TestParseUnixNumber(t *testing.T) {
	cases := []struct {
		in   string
		want string
	}{
		{"1710068400", "2024-03-10T11:00:00Z"},
		{"1710068400.25", "2024-03-10T11:00:00.25Z"},
		{"1710068400250", "2024-03-10T11:00:00.25Z"},
		{"1710068400250000", "2024-03-10T11:00:00.25Z"},
		{"1710068400250000001", "2024-03-10T11:00:00.250000001Z"},
		{"1.7100684e9", "2024-03-10T11:00:00Z"},
	}
	for _, tc := range cases {
		got, err := parseUnixNumber(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if s := got.Format(time.RFC3339Nano); s != tc.want {
			t.Errorf("%s = %s, want %s", tc.in, s, tc.want)
		}
	}
	for _, bad := range []string{"-1", "1.2.3", "1e400", "123456789012.5", "abc"} {
		if _, err := parseUnixNumber(bad); err == nil {
			t.Errorf("%s parsed", bad)
		}
	}
}
