package parser

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// radiusParser parses RADIUS accounting records as FreeRADIUS writes them:
//
//   - a `detail` file record: a ctime header line ("Wed Dec  2 01:00:00
//     2026") then one "\tAttribute = Value" line each (the file tailer
//     hands the parser the whole record, up to its blank line);
//   - a linelog line of attribute pairs, "Acct-Status-Type = Start,
//     User-Name = "alice", Framed-IP-Address = 10.20.0.5" (commas or
//     newlines between pairs, "Name=Value" accepted too);
//   - a linelog line of the shipped log_accounting messages, "Connect:
//     [alice] (did AP cli MAC port N ip ADDR)" and "Disconnect: […] (…) N
//     seconds".
//
// Mapping: Acct-Status-Type Start → Binding start (Action session_open),
// Interim-Update/Alive → update (Action interim), Stop → stop (Action
// session_close); User-Name → User, Framed-IP-Address (else
// Framed-IPv6-Address) → SrcAddr, Calling-Station-Id → Device (MACs
// normalised), Called-Station-Id → Resource, NAS-IP-Address → DstAddr,
// NAS-Identifier → DstHost, Acct-Session-Id → SessionID, NAS-Port-Type →
// AuthMethod; Event-Timestamp (else Timestamp, else the detail header) →
// Time. Accounting-On/Off (the NAS started or is shutting down: every
// session it reported is over) → Binding stop with Action nas_restart,
// the NAS in DstAddr/DstHost and no user, address or session; records
// without a status type are ignored.
type radiusParser struct{}

func isRADIUSTag(app []byte) bool {
	switch strings.ToLower(string(app)) {
	case "radiusd", "freeradius", "radius", "linelog":
		return true
	}
	return false
}

func (radiusParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(FormatRADIUS)
	}
	reset(ev, string(FormatRADIUS), &meta)
	rec := bytes.TrimSpace(line)
	// A detail record's header line.
	var header time.Time
	if nl := bytes.IndexByte(rec, '\n'); nl >= 0 && bytes.IndexByte(rec[:nl], '=') < 0 {
		h := bytes.TrimSpace(rec[:nl])
		if t, _, ok := ctime(h, meta.location()); ok {
			header = t
		} else {
			return parseErr(FormatRADIUS, ReasonBadTime, "detail header %q is not a ctime date", h)
		}
		rec = rec[nl+1:]
	} else {
		var t time.Time
		rec, t, _ = stripFilePrefix(rec, &meta, isRADIUSTag)
		header = t
	}
	if bytes.HasPrefix(rec, []byte("Connect: [")) || bytes.HasPrefix(rec, []byte("Disconnect: [")) {
		if !header.IsZero() {
			ev.Time = unixNano(header)
		}
		return radiusLinelog(rec, ev)
	}
	attrs, err := radiusPairs(rec)
	if err != nil {
		return err
	}
	if len(attrs) == 0 {
		return parseErr(FormatRADIUS, ReasonNoMatch, "no Attribute = Value pairs")
	}
	if !header.IsZero() {
		ev.Time = unixNano(header)
	}
	if ts, ok := attrs["timestamp"]; ok {
		if sec, err := strconv.ParseInt(ts, 10, 64); err == nil && unixSeconds(sec) != 0 {
			ev.Time = unixSeconds(sec)
		}
	}
	if ts, ok := attrs["event-timestamp"]; ok {
		t, ok := radiusTime(ts)
		if !ok {
			return parseErr(FormatRADIUS, ReasonBadTime, "bad Event-Timestamp %q", ts)
		}
		ev.Time = unixNano(t)
	}
	status, ok := attrs["acct-status-type"]
	if !ok {
		return ErrIgnored // an authentication record, not accounting
	}
	switch strings.ToLower(status) {
	case "start", "1":
		ev.Binding, ev.Action = schemas.BindingStart, schemas.ActionSessionOpen
	case "interim-update", "alive", "3":
		ev.Binding, ev.Action = schemas.BindingUpdate, "interim"
	case "stop", "2":
		ev.Binding, ev.Action = schemas.BindingStop, schemas.ActionSessionClose
	case "accounting-on", "accounting-off", "7", "8":
		ev.Binding, ev.Action = schemas.BindingStop, schemas.ActionNASRestart
		ev.Outcome = schemas.OutcomeSuccess
		if v, ok := attrs["nas-ip-address"]; ok {
			if a, ok := parseAddr(v); ok {
				ev.DstAddr = a
			}
		}
		if v, ok := attrs["nas-ipv6-address"]; ok && ev.DstAddr == (schemas.Addr{}) {
			if a, ok := parseAddr(v); ok {
				ev.DstAddr = a
			}
		}
		ev.DstHost = attrs["nas-identifier"]
		if ev.DstAddr == (schemas.Addr{}) && ev.DstHost == "" {
			return parseErr(FormatRADIUS, ReasonMissingField, "%s without NAS-IP-Address or NAS-Identifier", status)
		}
		return nil
	default:
		return ErrIgnored // Failed…
	}
	ev.Outcome = schemas.OutcomeSuccess
	ev.User = attrs["user-name"]
	for _, k := range []string{"framed-ip-address", "framed-ipv6-address"} {
		v, ok := attrs[k]
		if !ok || ev.SrcAddr != (schemas.Addr{}) {
			continue
		}
		a, ok := parseAddr(v)
		if !ok {
			return parseErr(FormatRADIUS, ReasonBadAddress, "bad %s %q", k, v)
		}
		ev.SrcAddr = a
	}
	if v, ok := attrs["nas-ip-address"]; ok {
		if a, ok := parseAddr(v); ok {
			ev.DstAddr = a
		}
	}
	ev.DstHost = attrs["nas-identifier"]
	ev.Device = normalizeMAC(attrs["calling-station-id"])
	ev.Resource = attrs["called-station-id"]
	ev.SessionID = attrs["acct-session-id"]
	ev.AuthMethod = strings.ToLower(attrs["nas-port-type"])
	if ev.User == "" && ev.Binding != schemas.BindingStop {
		return parseErr(FormatRADIUS, ReasonMissingField, "no User-Name")
	}
	return nil
}

// radiusPairs reads "Name = Value" pairs separated by newlines or commas;
// values may be double-quoted (with \" escapes). Names are lowercased.
func radiusPairs(b []byte) (map[string]string, error) {
	attrs := map[string]string{}
	i := 0
	for i < len(b) {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r' || b[i] == ',') {
			i++
		}
		if i == len(b) {
			break
		}
		eq := bytes.IndexByte(b[i:], '=')
		if eq < 0 {
			return nil, parseErr(FormatRADIUS, ReasonNoMatch, "%q is not Attribute = Value", truncate(b[i:]))
		}
		name := string(bytes.TrimSpace(b[i : i+eq]))
		if name == "" || strings.ContainsAny(name, " ,\n\"") {
			return nil, parseErr(FormatRADIUS, ReasonNoMatch, "bad attribute name %q", truncate(b[i:i+eq]))
		}
		i += eq + 1
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		var val string
		if i < len(b) && b[i] == '"' {
			var sb strings.Builder
			j := i + 1
			for ; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' && j+1 < len(b) {
					j++
				}
				sb.WriteByte(b[j])
			}
			if j == len(b) {
				return nil, parseErr(FormatRADIUS, ReasonNoMatch, "unterminated quote in %s", name)
			}
			val, i = sb.String(), j+1
		} else {
			j := i
			for j < len(b) && b[j] != ',' && b[j] != '\n' {
				j++
			}
			val, i = string(bytes.TrimSpace(b[i:j])), j
		}
		attrs[strings.ToLower(name)] = val
	}
	return attrs, nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}

// radiusTime parses an Event-Timestamp: Unix seconds, or FreeRADIUS's
// "Dec  2 2026 01:00:00 UTC" (the zone an abbreviation or numeric).
func radiusTime(s string) (time.Time, bool) {
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		if unixSeconds(sec) == 0 {
			return time.Time{}, false
		}
		return time.Unix(sec, 0).UTC(), true
	}
	for _, layout := range []string{"Jan _2 2006 15:04:05 MST", "Jan _2 2006 15:04:05 -0700", "Jan _2 2006 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// radiusLinelog parses the shipped log_accounting messages.
func radiusLinelog(b []byte, ev *schemas.AccessEvent) error {
	stop := bytes.HasPrefix(b, []byte("Disconnect: ["))
	b = b[bytes.IndexByte(b, '[')+1:]
	end := bytes.Index(b, []byte("] ("))
	if end < 0 {
		return parseErr(FormatRADIUS, ReasonNoMatch, "no \"] (\" after the user")
	}
	ev.User = string(b[:end])
	b = b[end+3:]
	close := bytes.IndexByte(b, ')')
	if close < 0 {
		return parseErr(FormatRADIUS, ReasonNoMatch, "unterminated attribute list")
	}
	fields := strings.Fields(string(b[:close]))
	isKey := func(s string) bool { return s == "did" || s == "cli" || s == "port" || s == "ip" }
	for k := 0; k < len(fields); k++ {
		if !isKey(fields[k]) || k+1 == len(fields) || isKey(fields[k+1]) {
			continue
		}
		v := fields[k+1]
		switch fields[k] {
		case "did":
			ev.Resource = v
		case "cli":
			ev.Device = normalizeMAC(v)
		case "ip":
			a, ok := parseAddr(v)
			if !ok {
				return parseErr(FormatRADIUS, ReasonBadAddress, "bad ip %q", v)
			}
			ev.SrcAddr = a
		}
		k++
	}
	ev.Outcome = schemas.OutcomeSuccess
	if stop {
		ev.Binding, ev.Action = schemas.BindingStop, schemas.ActionSessionClose
	} else {
		ev.Binding, ev.Action = schemas.BindingStart, schemas.ActionSessionOpen
	}
	if ev.User == "" && !stop {
		return parseErr(FormatRADIUS, ReasonMissingField, "no user")
	}
	return nil
}
