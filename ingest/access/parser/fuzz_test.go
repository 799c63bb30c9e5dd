package parser

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

var knownReasons = map[Reason]bool{
	ReasonNoMatch: true, ReasonBadJSON: true, ReasonBadTime: true,
	ReasonBadAddress: true, ReasonBadUser: true, ReasonMissingField: true, ReasonTooLong: true,
}

// checkParseResult asserts the contract of Parse on any input: errors are
// ErrIgnored or a *ParseError of the right format with a known reason;
// events have a Source, a valid Outcome and the meta's receive time; the
// event does not alias the input line.
func checkParseResult(t *testing.T, f Format, p Parser, line []byte) *schemas.AccessEvent {
	t.Helper()
	var ev schemas.AccessEvent
	err := p.Parse(line, testMeta, &ev)
	if err != nil {
		if err == ErrIgnored {
			return nil
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("error %v (%T) is neither ErrIgnored nor *ParseError", err, err)
		}
		if pe.Format != f || !knownReasons[pe.Reason] || pe.Err == nil {
			t.Fatalf("bad ParseError %+v", pe)
		}
		return nil
	}
	checkEvent(t, &ev, testMeta)
	// Parse is deterministic and does not alias line: scribbling over the
	// line afterwards changes nothing.
	before := ev
	for i := range line {
		line[i] = 'X'
	}
	if before != ev {
		t.Fatalf("event changed after the line was overwritten")
	}
	return &ev
}

func seedLines(f *testing.F, files ...string) {
	for _, name := range files {
		for _, l := range testLines(f, name) {
			f.Add([]byte(l))
		}
	}
}

func FuzzParseSSHD(f *testing.F) {
	seedLines(f, "sshd.log")
	p, _ := New(FormatSSHD)
	f.Fuzz(func(t *testing.T, line []byte) {
		ev := checkParseResult(t, FormatSSHD, p, line)
		if ev == nil {
			return
		}
		switch ev.Action {
		case schemas.ActionLogin, schemas.ActionDisconnect, schemas.ActionSessionOpen, schemas.ActionSessionClose:
		default:
			t.Fatalf("sshd Action %q", ev.Action)
		}
		if ev.Action == schemas.ActionLogin && ev.Outcome == schemas.OutcomeUnknown {
			t.Fatal("sshd login without outcome")
		}
	})
}

func FuzzParseWeb(f *testing.F) {
	seedLines(f, "nginx.log", "apache.log", "web_shapes.log")
	p, _ := New(FormatNginx)
	f.Fuzz(func(t *testing.T, line []byte) {
		ev := checkParseResult(t, FormatNginx, p, line)
		if ev == nil {
			return
		}
		if ev.Status < 100 || ev.Status > 999 {
			t.Fatalf("status %d", ev.Status)
		}
		if want := httpOutcome(int(ev.Status)); ev.Outcome != want {
			t.Fatalf("status %d gave outcome %s, want %s", ev.Status, ev.Outcome, want)
		}
		// The user is one token that is neither an address nor a list:
		// a shifted line is rejected, never bound as an identity.
		if _, isAddr := parseAddr(ev.User); isAddr || strings.ContainsAny(ev.User, " ,\t") || ev.User == "-" {
			t.Fatalf("user %q", ev.User)
		}
		if ev.ForwardedFor != "" && !strings.Contains(ev.ForwardedFor, ", ") {
			t.Fatalf("forwarded_for %q is not a chain", ev.ForwardedFor)
		}
	})
}

func FuzzParseK8sAudit(f *testing.F) {
	seedLines(f, "k8s_audit.jsonl")
	p, _ := New(FormatK8sAudit)
	f.Fuzz(func(t *testing.T, line []byte) {
		ev := checkParseResult(t, FormatK8sAudit, p, line)
		if ev != nil && ev.Action == "" {
			t.Fatal("k8s event without verb")
		}
	})
}

func FuzzParseGateway(f *testing.F) {
	seedLines(f, "gateway.jsonl")
	p, _ := New(FormatGateway)
	f.Fuzz(func(t *testing.T, line []byte) {
		ev := checkParseResult(t, FormatGateway, p, line)
		if ev != nil && ev.Action == "" {
			t.Fatal("gateway event without action")
		}
	})
}

func FuzzParseJSON(f *testing.F) {
	seedLines(f, "json.jsonl", "gateway.jsonl")
	p, _ := New(FormatJSON)
	f.Fuzz(func(t *testing.T, line []byte) {
		ev := checkParseResult(t, FormatJSON, p, line)
		if ev != nil && ev.Source == "" {
			t.Fatal("json event without source")
		}
	})
}

func FuzzParseSyslog(f *testing.F) {
	seedLines(f, "syslog3164.txt", "syslog5424.txt")
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m SyslogMessage
		err := ParseSyslog(b, now, nil, &m)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Format != FormatSyslog || !knownReasons[pe.Reason] {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		if m.Facility < 0 || m.Facility > 23 || m.Severity < 0 || m.Severity > 7 {
			t.Fatalf("PRI %d/%d", m.Facility, m.Severity)
		}
		if len(m.Message) > len(b) {
			t.Fatal("Message longer than the input")
		}
		if !m.Timestamp.IsZero() && (m.Timestamp.Year() < -1 || m.Timestamp.Year() > 10000) {
			t.Fatalf("timestamp %s", m.Timestamp)
		}
	})
}
