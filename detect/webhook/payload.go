package webhook

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flowaudit/flowaudit/schemas"
)

// JSONAlert is the body posted by format json: one object per alert, the
// same names as the columns of ClickHouse's flowaudit.alerts table.
//
//	{
//	  "alert_id": "port_scan:…",               // deterministic; use it to deduplicate retries
//	  "time": "2024-05-01T10:00:00.5Z",         // RFC 3339, nanoseconds, UTC
//	  "kind": "port_scan",                      // DESIGN.md alert kinds
//	  "severity": "high",                       // low, medium, high, critical
//	  "src_addr": "10.1.0.5",                   // text form; null when absent
//	  "dst_addr": "2001:db8::1",
//	  "src_segment": "web", "dst_segment": "db", "src_identity": "alice",
//	  "dst_port": 5432, "proto": 6,             // IANA protocol number
//	  "first_seen": "…", "last_seen": "…",      // RFC 3339; null when absent
//	  "count": 30, "bytes": 123456,
//	  "summary": "one human sentence",
//	  "evidence": {…}                           // the detector's JSON object; a string
//	                                            // when it is not valid JSON; null when empty
//	}
//
// Alert.Update is not a field: updates are never posted.
type JSONAlert struct {
	AlertID     string          `json:"alert_id"`
	Time        *string         `json:"time"`
	Kind        string          `json:"kind"`
	Severity    string          `json:"severity"`
	SrcAddr     *string         `json:"src_addr"`
	DstAddr     *string         `json:"dst_addr"`
	SrcSegment  string          `json:"src_segment"`
	DstSegment  string          `json:"dst_segment"`
	SrcIdentity string          `json:"src_identity"`
	DstPort     uint16          `json:"dst_port"`
	Proto       uint8           `json:"proto"`
	FirstSeen   *string         `json:"first_seen"`
	LastSeen    *string         `json:"last_seen"`
	Count       uint64          `json:"count"`
	Bytes       uint64          `json:"bytes"`
	Summary     string          `json:"summary"`
	Evidence    json.RawMessage `json:"evidence"`
}

// encodeJSON returns the format json body of a.
func encodeJSON(a *schemas.Alert) ([]byte, error) {
	p := JSONAlert{
		AlertID:     a.ID,
		Time:        nsTime(a.Time),
		Kind:        a.Kind,
		Severity:    a.Severity.String(),
		SrcAddr:     addrText(a.SrcAddr),
		DstAddr:     addrText(a.DstAddr),
		SrcSegment:  a.SrcSegment,
		DstSegment:  a.DstSegment,
		SrcIdentity: a.SrcIdentity,
		DstPort:     a.DstPort,
		Proto:       a.Proto,
		FirstSeen:   nsTime(a.FirstSeen),
		LastSeen:    nsTime(a.LastSeen),
		Count:       a.Count,
		Bytes:       a.Bytes,
		Summary:     a.Summary,
		Evidence:    evidence(a.Evidence),
	}
	return json.Marshal(p)
}

// evidence embeds valid JSON as is and anything else as a string, so a
// detector bug cannot make the whole body invalid.
func evidence(s string) json.RawMessage {
	switch {
	case strings.TrimSpace(s) == "":
		return json.RawMessage("null")
	case json.Valid([]byte(s)):
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s) // a string always marshals (invalid UTF-8 becomes U+FFFD)
	return b
}

func nsTime(ns uint64) *string {
	if ns == 0 {
		return nil
	}
	s := time.Unix(0, int64(ns)).UTC().Format(time.RFC3339Nano)
	return &s
}

func addrText(a schemas.Addr) *string {
	if a == (schemas.Addr{}) {
		return nil
	}
	s := a.String()
	return &s
}

// Slack incoming-webhook message: "text" is the notification fallback,
// "blocks" the rendered message (header, summary, fields, context).
// https://api.slack.com/reference/block-kit/blocks
type slackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Fields   []slackText `json:"fields,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"` // plain_text or mrkdwn
	Text string `json:"text"`
}

// Slack's limits on text lengths (characters).
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackFieldMax   = 2000
)

// encodeSlack returns the format slack body of a: a header
// "[HIGH] address_scan", the summary, a fields section (source,
// destination, identity, port/proto, count, window) and a context line
// with the alert id and time.
func encodeSlack(a *schemas.Alert) ([]byte, error) {
	title := fmt.Sprintf("[%s] %s", strings.ToUpper(a.Severity.String()), a.Kind)
	summary := a.Summary
	if strings.TrimSpace(summary) == "" {
		summary = "(no summary)" // Slack rejects an empty section text
	}
	field := func(name, value string) slackText {
		return slackText{Type: "mrkdwn", Text: truncate("*"+name+"*\n"+slackEscape(value), slackFieldMax)}
	}
	context := "alert_id " + slackEscape(a.ID)
	if a.Time != 0 {
		context += " · " + secondTime(a.Time)
	}
	msg := slackMessage{
		Text: truncate(slackEscape(title+": "+summary), slackSectionMax),
		Blocks: []slackBlock{
			{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(title, slackHeaderMax)}},
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(slackEscape(summary), slackSectionMax)}},
			{Type: "section", Fields: []slackText{
				field("Source", endpointText(a.SrcAddr, a.SrcSegment)),
				field("Destination", endpointText(a.DstAddr, a.DstSegment)),
				field("Identity", orNone(a.SrcIdentity)),
				field("Port/proto", portProto(a.DstPort, a.Proto)),
				field("Count", strconv.FormatUint(a.Count, 10)),
				field("Window", window(a.FirstSeen, a.LastSeen)),
			}},
			{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: truncate(context, slackSectionMax)}}},
		},
	}
	return json.Marshal(msg)
}

// slackEscape escapes the three characters Slack's mrkdwn reserves, so a
// segment or user name cannot inject a mention or a link.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// truncate cuts s to at most n characters, ending with "…" when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func endpointText(a schemas.Addr, segment string) string {
	addr := "none"
	if p := addrText(a); p != nil {
		addr = *p
	}
	if segment == "" {
		return addr
	}
	return addr + " (" + segment + ")"
}

func portProto(port uint16, proto uint8) string {
	name := protoName(proto)
	if port == 0 {
		return name
	}
	return strconv.Itoa(int(port)) + "/" + name
}

func protoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// window renders first and last seen for people: seconds, UTC, and the
// span.
func window(first, last uint64) string {
	switch {
	case first == 0 && last == 0:
		return "unknown"
	case first == 0:
		return "until " + secondTime(last)
	case last == 0:
		return "from " + secondTime(first)
	}
	var d time.Duration
	if last > first {
		d = time.Duration(last - first)
	}
	return fmt.Sprintf("%s → %s (%s)", secondTime(first), secondTime(last), d.Round(time.Second))
}

func secondTime(ns uint64) string {
	return time.Unix(0, int64(ns)).UTC().Format(time.RFC3339)
}
