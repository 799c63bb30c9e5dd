package parser

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the parsers' output")

// testMeta is the transport metadata every golden line is parsed with.
var testMeta = Meta{
	Received: time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC),
	Host:     "collector-1",
}

// goldenEvent is an AccessEvent in a form people can review: times in
// RFC 3339, addresses and outcomes as strings, absent fields left out.
// Received and Source are checked by checkEvent instead.
type goldenEvent struct {
	Time       string `json:"time,omitempty"`
	Source     string `json:"source,omitempty"`
	Host       string `json:"host,omitempty"`
	User       string `json:"user,omitempty"`
	SrcAddr    string `json:"src_addr,omitempty"`
	SrcPort    uint16 `json:"src_port,omitempty"`
	DstAddr    string `json:"dst_addr,omitempty"`
	DstPort    uint16 `json:"dst_port,omitempty"`
	DstHost    string `json:"dst_host,omitempty"`
	Resource   string `json:"resource,omitempty"`
	Action     string `json:"action,omitempty"`
	Outcome    string `json:"outcome"`
	SessionID  string `json:"session_id,omitempty"`
	AuthMethod string `json:"auth_method,omitempty"`
	Status     int32  `json:"status,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
	// ForwardedFor is the X-Forwarded-For chain of web lines.
	ForwardedFor string `json:"forwarded_for,omitempty"`
	// Identity sources.
	Binding    string `json:"binding,omitempty"`
	Device     string `json:"device,omitempty"`
	DeviceName string `json:"device_name,omitempty"`
	Expires    string `json:"expires,omitempty"`
	OuterAddr  string `json:"outer_addr,omitempty"`
	Labels     string `json:"labels,omitempty"`
}

func toGolden(ev *schemas.AccessEvent) *goldenEvent {
	g := &goldenEvent{
		Source: ev.Source, Host: ev.Host, User: ev.User,
		SrcPort: ev.SrcPort, DstPort: ev.DstPort, DstHost: ev.DstHost,
		Resource: ev.Resource, Action: ev.Action, Outcome: ev.Outcome.String(),
		SessionID: ev.SessionID, AuthMethod: ev.AuthMethod, Status: ev.Status, UserAgent: ev.UserAgent,
		ForwardedFor: ev.ForwardedFor,
		Binding:      ev.Binding.String(), Device: ev.Device, DeviceName: ev.DeviceName, Labels: ev.Labels,
	}
	if ev.Expires != 0 {
		g.Expires = time.Unix(0, int64(ev.Expires)).UTC().Format(time.RFC3339Nano)
	}
	if ev.OuterAddr != (schemas.Addr{}) {
		g.OuterAddr = ev.OuterAddr.String()
	}
	if ev.Time != 0 {
		g.Time = time.Unix(0, int64(ev.Time)).UTC().Format(time.RFC3339Nano)
	}
	if ev.SrcAddr != (schemas.Addr{}) {
		g.SrcAddr = ev.SrcAddr.String()
	}
	if ev.DstAddr != (schemas.Addr{}) {
		g.DstAddr = ev.DstAddr.String()
	}
	return g
}

// goldenResult is the outcome of parsing one line: an event, or the
// failure Reason ("ignored" for ErrIgnored).
type goldenResult struct {
	Line  int          `json:"line"`
	Input string       `json:"input"`
	Event *goldenEvent `json:"event,omitempty"`
	Error string       `json:"error,omitempty"`
}

// errorLabel turns a parse error into its golden label, failing the test
// for errors outside the documented contract.
func errorLabel(t *testing.T, format Format, err error) string {
	t.Helper()
	if err == ErrIgnored {
		return "ignored"
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is neither ErrIgnored nor *ParseError", err, err)
	}
	if pe.Format != format {
		t.Errorf("ParseError.Format = %q, want %q", pe.Format, format)
	}
	return string(pe.Reason)
}

// testLines splits a testdata file into lines, keeping empty lines (they
// are junk the parsers must reject) but not the final newline's.
func testLines(t testing.TB, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// compareGolden compares got with testdata/name, or rewrites it with -update.
func compareGolden(t *testing.T, name string, got any) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(got); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	// Round-trip got through JSON so both sides have the same types.
	gotJSON, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var gotV, wantV any
	if err := json.Unmarshal(gotJSON, &gotV); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &wantV); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(gotV, wantV); diff != "" {
		t.Errorf("%s mismatch (-got +want):\n%s", name, diff)
	}
}

// checkEvent asserts what holds for every successfully parsed event.
func checkEvent(t testing.TB, ev *schemas.AccessEvent, meta Meta) {
	t.Helper()
	if ev.Source == "" {
		t.Errorf("Source empty in %+v", ev)
	}
	if ev.Outcome > schemas.OutcomeDenied {
		t.Errorf("Outcome %d out of range", ev.Outcome)
	}
	if want := unixNano(meta.Received); ev.Received != want {
		t.Errorf("Received = %d, want %d", ev.Received, want)
	}
}

func TestGolden(t *testing.T) {
	custom := JSONMapping{
		Time: "@timestamp", User: "actor.name", SrcAddr: "actor.ip",
		DstHost: "target.host", DstPort: "target.port",
		Action: "event.action", Outcome: "event.outcome", Status: "http.code",
		TimeLayout:    "02/01/2006 15:04:05",
		SuccessValues: []string{"allow"}, FailureValues: []string{"fail"},
	}
	cases := []struct {
		input  string
		format Format
		opts   []Option
		meta   Meta
	}{
		{input: "sshd.log", format: FormatSSHD},
		{input: "nginx.log", format: FormatNginx},
		{input: "apache.log", format: FormatApache},
		{input: "web_shapes.log", format: FormatNginx},
		{input: "k8s_audit.jsonl", format: FormatK8sAudit},
		{input: "gateway.jsonl", format: FormatGateway},
		{input: "json.jsonl", format: FormatJSON},
		{input: "openvpn.log", format: FormatOpenVPN},
		{input: "radius.log", format: FormatRADIUS},
		{input: "kerberos.log", format: FormatKerberos},
		{input: "windows.jsonl", format: FormatWindows},
		{input: "dhcp.log", format: FormatDHCP},
		{
			input: "json_custom.jsonl", format: FormatJSON, opts: []Option{WithJSONMapping(custom)},
			meta: Meta{Location: time.FixedZone("CET", 3600)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.input, func(t *testing.T) {
			p, err := New(tc.format, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			meta := testMeta
			if tc.meta.Location != nil {
				meta.Location = tc.meta.Location
			}
			var results []goldenResult
			for i, line := range testLines(t, tc.input) {
				r := goldenResult{Line: i + 1, Input: line}
				var ev schemas.AccessEvent
				if err := p.Parse([]byte(line), meta, &ev); err != nil {
					r.Error = errorLabel(t, tc.format, err)
				} else {
					checkEvent(t, &ev, meta)
					r.Event = toGolden(&ev)
				}
				results = append(results, r)
			}
			name := strings.TrimSuffix(tc.input, filepath.Ext(tc.input)) + ".golden.json"
			compareGolden(t, name, results)
		})
	}
}

// goldenSyslog is a SyslogMessage in reviewable form.
type goldenSyslog struct {
	Line      int    `json:"line"`
	Input     string `json:"input"`
	Error     string `json:"error,omitempty"`
	Facility  int    `json:"facility"`
	Severity  int    `json:"severity"`
	Timestamp string `json:"timestamp,omitempty"`
	Hostname  string `json:"hostname,omitempty"`
	AppName   string `json:"app_name,omitempty"`
	ProcID    string `json:"proc_id,omitempty"`
	MsgID     string `json:"msg_id,omitempty"`
	Message   string `json:"message,omitempty"`
}

func TestGoldenSyslog(t *testing.T) {
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, input := range []string{"syslog3164.txt", "syslog5424.txt"} {
		t.Run(input, func(t *testing.T) {
			var results []goldenSyslog
			var m SyslogMessage // reused, as listeners do
			for i, line := range testLines(t, input) {
				r := goldenSyslog{Line: i + 1, Input: line}
				if err := ParseSyslog([]byte(line), now, nil, &m); err != nil {
					r.Error = errorLabel(t, FormatSyslog, err)
				} else {
					r.Facility, r.Severity = m.Facility, m.Severity
					if !m.Timestamp.IsZero() {
						r.Timestamp = m.Timestamp.UTC().Format(time.RFC3339Nano)
					}
					r.Hostname, r.AppName, r.ProcID, r.MsgID = m.Hostname, m.AppName, m.ProcID, m.MsgID
					r.Message = string(m.Message)
				}
				results = append(results, r)
			}
			compareGolden(t, strings.TrimSuffix(input, ".txt")+".golden.json", results)
		})
	}
}
