package webhook

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

var t0 = time.Date(2024, 5, 1, 10, 0, 0, 500_000_000, time.UTC)

func ns(t time.Time) uint64 { return uint64(t.UnixNano()) }

func testAlert(id string, sev schemas.Severity) *schemas.Alert {
	return &schemas.Alert{
		ID:          id,
		Time:        ns(t0.Add(5 * time.Minute)),
		Kind:        schemas.AlertAddressScan,
		Severity:    sev,
		SrcAddr:     schemas.AddrFromNetip(netip.MustParseAddr("10.1.0.5")),
		DstAddr:     schemas.AddrFromNetip(netip.MustParseAddr("2001:db8::1")),
		SrcSegment:  "web",
		DstSegment:  "db",
		SrcIdentity: "alice",
		DstPort:     5432,
		Proto:       6,
		FirstSeen:   ns(t0),
		LastSeen:    ns(t0.Add(4*time.Minute + 30*time.Second)),
		Count:       30,
		Bytes:       123456,
		Summary:     "10.1.0.5 reached 30 hosts on 5432/tcp in db",
		Evidence:    `{"hosts":["10.2.0.1","10.2.0.2"],"window":"5m"}`,
	}
}

func decodeMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, b)
	}
	return m
}

func TestEncodeJSON(t *testing.T) {
	b, err := encodeJSON(testAlert("address_scan:web:10.1.0.5:5432/tcp:1714557600", schemas.SeverityHigh))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"alert_id":     "address_scan:web:10.1.0.5:5432/tcp:1714557600",
		"time":         "2024-05-01T10:05:00.5Z",
		"kind":         "address_scan",
		"severity":     "high",
		"src_addr":     "10.1.0.5",
		"dst_addr":     "2001:db8::1",
		"src_segment":  "web",
		"dst_segment":  "db",
		"src_identity": "alice",
		"dst_port":     float64(5432),
		"proto":        float64(6),
		"first_seen":   "2024-05-01T10:00:00.5Z",
		"last_seen":    "2024-05-01T10:04:30.5Z",
		"count":        float64(30),
		"bytes":        float64(123456),
		"summary":      "10.1.0.5 reached 30 hosts on 5432/tcp in db",
		"evidence":     map[string]any{"hosts": []any{"10.2.0.1", "10.2.0.2"}, "window": "5m"},
	}
	if diff := cmp.Diff(decodeMap(t, b), want); diff != "" {
		t.Errorf("JSON body (-got +want):\n%s", diff)
	}
}

func TestEncodeJSONAbsentValues(t *testing.T) {
	for _, tc := range []struct {
		evidence string
		want     any
	}{
		{"", nil},
		{"not json {", "not json {"},
		{`[1,2]`, []any{float64(1), float64(2)}},
	} {
		a := &schemas.Alert{ID: "x", Time: 1, Kind: schemas.AlertNewEdge, Severity: schemas.SeverityLow, Evidence: tc.evidence}
		b, err := encodeJSON(a)
		if err != nil {
			t.Fatal(err)
		}
		m := decodeMap(t, b)
		for _, k := range []string{"src_addr", "dst_addr", "first_seen", "last_seen"} {
			if v, ok := m[k]; !ok || v != nil {
				t.Errorf("%s = %v (present %v), want null", k, v, ok)
			}
		}
		if diff := cmp.Diff(m["evidence"], tc.want); diff != "" {
			t.Errorf("evidence %q (-got +want):\n%s", tc.evidence, diff)
		}
		if got := m["time"]; got != "1970-01-01T00:00:00.000000001Z" {
			t.Errorf("time = %v", got)
		}
	}
}

func TestEncodeSlack(t *testing.T) {
	a := testAlert("id-1", schemas.SeverityHigh)
	a.SrcIdentity = "<!channel> & co"
	b, err := encodeSlack(a)
	if err != nil {
		t.Fatal(err)
	}
	field := func(name, value string) any {
		return map[string]any{"type": "mrkdwn", "text": "*" + name + "*\n" + value}
	}
	want := map[string]any{
		"text": "[HIGH] address_scan: 10.1.0.5 reached 30 hosts on 5432/tcp in db",
		"blocks": []any{
			map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": "[HIGH] address_scan"}},
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "10.1.0.5 reached 30 hosts on 5432/tcp in db"}},
			map[string]any{"type": "section", "fields": []any{
				field("Source", "10.1.0.5 (web)"),
				field("Destination", "2001:db8::1 (db)"),
				field("Identity", "&lt;!channel&gt; &amp; co"),
				field("Port/proto", "5432/tcp"),
				field("Count", "30"),
				field("Window", "2024-05-01T10:00:00Z → 2024-05-01T10:04:30Z (4m30s)"),
			}},
			map[string]any{"type": "context", "elements": []any{
				map[string]any{"type": "mrkdwn", "text": "alert_id id-1 · 2024-05-01T10:05:00Z"},
			}},
		},
	}
	if diff := cmp.Diff(decodeMap(t, b), want); diff != "" {
		t.Errorf("Slack body (-got +want):\n%s", diff)
	}
}

func TestEncodeSlackLimits(t *testing.T) {
	a := &schemas.Alert{ID: "x", Kind: strings.Repeat("k", 200), Severity: schemas.SeverityCritical}
	b, err := encodeSlack(a)
	if err != nil {
		t.Fatal(err)
	}
	var msg slackMessage
	if err := json.Unmarshal(b, &msg); err != nil {
		t.Fatal(err)
	}
	if n := len([]rune(msg.Blocks[0].Text.Text)); n > slackHeaderMax {
		t.Errorf("header is %d characters, Slack allows %d", n, slackHeaderMax)
	}
	if got := msg.Blocks[1].Text.Text; got != "(no summary)" {
		t.Errorf("empty summary rendered as %q; Slack rejects empty text", got)
	}
	if got := msg.Blocks[2].Fields[3].Text; got != "*Port/proto*\nany" {
		t.Errorf("port/proto = %q", got)
	}
	if got := msg.Blocks[2].Fields[5].Text; got != "*Window*\nunknown" {
		t.Errorf("window = %q", got)
	}
}
