package parser

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

func TestSyslog3164Year(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	cases := []struct {
		name string
		line string
		now  time.Time
		loc  *time.Location
		want time.Time
	}{
		{
			name: "same year",
			line: "<38>Mar 10 11:59:58 h sshd: x",
			now:  time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC),
			want: time.Date(2024, 3, 10, 11, 59, 58, 0, time.UTC),
		},
		{
			name: "Dec 31 received on Jan 1",
			line: "<38>Dec 31 23:59:59 h sshd: x",
			now:  time.Date(2025, 1, 1, 0, 0, 5, 0, time.UTC),
			want: time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC),
		},
		{
			name: "Jan 1 received on Dec 31 (sender clock ahead)",
			line: "<38>Jan  1 00:00:01 h sshd: x",
			now:  time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC),
			want: time.Date(2025, 1, 1, 0, 0, 1, 0, time.UTC),
		},
		{
			name: "slightly in the future stays this year",
			line: "<38>Mar 10 18:00:00 h sshd: x",
			now:  time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC),
			want: time.Date(2024, 3, 10, 18, 0, 0, 0, time.UTC),
		},
		{
			name: "year taken in loc, not UTC",
			line: "<38>Jan  1 00:30:00 h sshd: x",
			now:  time.Date(2024, 12, 31, 23, 45, 0, 0, time.UTC), // 2025-01-01 00:45 CET
			loc:  berlin,
			want: time.Date(2025, 1, 1, 0, 30, 0, 0, berlin),
		},
		{
			name: "Feb 29 of a leap year received in the next year",
			line: "<38>Feb 29 10:00:00 h sshd: x",
			now:  time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC),
			want: time.Date(2024, 2, 29, 10, 0, 0, 0, time.UTC),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m SyslogMessage
			if err := ParseSyslog([]byte(tc.line), tc.now, tc.loc, &m); err != nil {
				t.Fatal(err)
			}
			if !m.Timestamp.Equal(tc.want) {
				t.Errorf("Timestamp = %s, want %s", m.Timestamp, tc.want)
			}
		})
	}
}

func TestSyslogShapes(t *testing.T) {
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	type msg struct {
		Facility, Severity               int
		Timestamp                        time.Time
		Hostname, AppName, ProcID, MsgID string
		Message                          string
	}
	cases := []struct {
		name string
		line string
		want msg
	}{
		{
			name: "RFC 5424 with structured data and BOM",
			line: "<165>1 2024-03-10T11:00:00.5+01:00 host app 12 ID1 [a@1 x=\"[\\]\"][b@1 y=\"\\\"\"] \xef\xbb\xbfhello",
			want: msg{Facility: 20, Severity: 5, Timestamp: time.Date(2024, 3, 10, 10, 0, 0, 5e8, time.UTC),
				Hostname: "host", AppName: "app", ProcID: "12", MsgID: "ID1", Message: "hello"},
		},
		{
			name: "RFC 3164 without hostname",
			line: "<38>Mar 10 11:00:00 sshd[7]: Accepted",
			want: msg{Facility: 4, Severity: 6, Timestamp: time.Date(2024, 3, 10, 11, 0, 0, 0, time.UTC),
				AppName: "sshd", ProcID: "7", Message: "Accepted"},
		},
		{
			name: "RFC 3164 TAG: form",
			line: "<38>Mar 10 11:00:00 host nginx: 1.2.3.4 - -",
			want: msg{Facility: 4, Severity: 6, Timestamp: time.Date(2024, 3, 10, 11, 0, 0, 0, time.UTC),
				Hostname: "host", AppName: "nginx", Message: "1.2.3.4 - -"},
		},
		{
			name: "RFC 3164 with trailing newline and NUL",
			line: "<38>Mar 10 11:00:00 host app: m\r\n\x00",
			want: msg{Facility: 4, Severity: 6, Timestamp: time.Date(2024, 3, 10, 11, 0, 0, 0, time.UTC),
				Hostname: "host", AppName: "app", Message: "m"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A reused, dirty message must be fully overwritten.
			m := SyslogMessage{Hostname: "old", AppName: "old", ProcID: "old", MsgID: "old", Message: []byte("old")}
			if err := ParseSyslog([]byte(tc.line), now, nil, &m); err != nil {
				t.Fatal(err)
			}
			got := msg{m.Facility, m.Severity, m.Timestamp, m.Hostname, m.AppName, m.ProcID, m.MsgID, string(m.Message)}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// TestSyslogThenParse runs the listener's path: split the syslog message,
// pick the parser from the tag, parse MSG.
func TestSyslogThenParse(t *testing.T) {
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	line := []byte(`<190>1 2024-03-10T11:59:00Z web-1 nginx - - - 2001:db8::1 - - [10/Mar/2024:11:58:59 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`)
	var m SyslogMessage
	if err := ParseSyslog(line, now, nil, &m); err != nil {
		t.Fatal(err)
	}
	f, ok := FormatForApp(m.AppName)
	if !ok {
		t.Fatalf("no format for %q", m.AppName)
	}
	p, _ := New(f)
	var ev schemas.AccessEvent
	if err := p.Parse(m.Message, Meta{Received: now, Host: m.Hostname}, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Host != "web-1" || ev.SrcAddr != addr("2001:db8::1") || ev.Source != "nginx" {
		t.Errorf("event %+v", ev)
	}
}
