package parser

import (
	"encoding/json"
	"strings"

	"github.com/flowaudit/flowaudit/schemas"
)

// windowsParser parses Windows Security log events as JSON, one object per
// line, in the shapes shippers emit:
//
//   - Winlogbeat / Elastic Agent: winlog.event_id (or event.code),
//     winlog.event_data.*, winlog.computer_name, @timestamp;
//   - Windows Event Forwarding rendered as JSON (NXLog im_msvistalog,
//     Fluent Bit winevtlog, evtx_dump): EventID (or EventId,
//     System.EventID, Event.System.EventID), the event data as EventData
//     (or Event.EventData, event_data) — an object, or a Data list of
//     {"Name"|"@Name", "#text"|"Value"} — or flat at the top level
//     (NXLog), Computer (or Hostname, System.Computer, host.name) and
//     TimeCreated (string, or {SystemTime}), EventTime (NXLog, local time)
//     or timestamp.
//
// Events: 4624 (logon) → Action login, success, Binding start; 4625
// (failed logon) → login failure; 4634 and 4647 (logoff) → Action logout,
// Binding stop of the logon session (no address: the enricher ends what
// the session's 4624 bound); 4768 (Kerberos TGT, Status 0x0) → login
// success. Event data: TargetUserName (with TargetDomainName as
// "DOMAIN\user") → User, IpAddress → SrcAddr ("-" and empty: none),
// IpPort → SrcPort, TargetLogonId → SessionID, AuthenticationPackageName
// → AuthMethod, LogonType → Resource as "logon_type/N", WorkstationName →
// DstHost. Computer accounts (names ending in "$"), ANONYMOUS LOGON and
// other event IDs are ignored.
type windowsParser struct{}

func (windowsParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(FormatWindows)
	}
	reset(ev, string(FormatWindows), &meta)
	var obj map[string]any
	if err := decodeObjectNumbers(line, &obj); err != nil {
		return &ParseError{Format: FormatWindows, Reason: ReasonBadJSON, Err: err}
	}
	id := ""
	for _, k := range []string{"winlog.event_id", "EventID", "EventId", "event_id", "System.EventID", "Event.System.EventID", "event.code"} {
		if v, ok := lookup(obj, k); ok {
			if id = textValue(v); id != "" {
				break
			}
		}
	}
	if id == "" {
		return parseErr(FormatWindows, ReasonMissingField, "no event ID (winlog.event_id, EventID, System.EventID or event.code)")
	}
	data := obj
	for _, k := range []string{"winlog.event_data", "EventData", "Event.EventData", "event_data"} {
		if v, ok := lookup(obj, k); ok {
			if m := eventData(v); m != nil {
				data = m
				break
			}
		}
	}
	get := func(k string) string {
		v, _ := lookup(data, k)
		return strings.TrimSpace(textValue(v))
	}
	for _, k := range []string{"@timestamp", "TimeCreated.SystemTime", "TimeCreated", "System.TimeCreated.SystemTime", "Event.System.TimeCreated.SystemTime", "EventTime", "timestamp"} {
		v, ok := lookup(obj, k)
		if !ok {
			continue
		}
		s := textValue(v)
		if s == "" {
			continue
		}
		t, err := parseTimeString(s, "", meta.location())
		if err != nil {
			var ok bool
			if t, _, ok = parseISOLocal(s, meta.location()); !ok {
				return parseErr(FormatWindows, ReasonBadTime, "bad %s %q", k, s)
			}
		}
		ev.Time = unixNano(t)
		break
	}
	for _, k := range []string{"winlog.computer_name", "Computer", "System.Computer", "Event.System.Computer", "Hostname", "host.name"} {
		if s, ok := lookupString(obj, k); ok && s != "" {
			ev.Host = s
			break
		}
	}
	user := get("TargetUserName")
	if user == "" || user == "-" || strings.HasSuffix(user, "$") || strings.EqualFold(user, "ANONYMOUS LOGON") {
		return ErrIgnored
	}
	if d := get("TargetDomainName"); d != "" && d != "-" && !strings.Contains(user, "@") {
		user = d + `\` + user
	}
	ev.User = user
	ev.SessionID = get("TargetLogonId")
	ev.AuthMethod = get("AuthenticationPackageName")
	if lt := get("LogonType"); lt != "" {
		ev.Resource = "logon_type/" + lt
	}
	if w := get("WorkstationName"); w != "-" {
		ev.DstHost = w
	}
	if ip := strings.TrimPrefix(get("IpAddress"), "::ffff:"); ip != "" && ip != "-" {
		a, ok := parseAddr(ip)
		if !ok {
			return parseErr(FormatWindows, ReasonBadAddress, "bad IpAddress %q", ip)
		}
		ev.SrcAddr = a
		if p, ok := parsePort(get("IpPort")); ok {
			ev.SrcPort = p
		}
	}
	switch id {
	case "4624":
		ev.Action, ev.Outcome, ev.Binding = schemas.ActionLogin, schemas.OutcomeSuccess, schemas.BindingStart
	case "4625":
		ev.Action, ev.Outcome = schemas.ActionLogin, schemas.OutcomeFailure
	case "4634", "4647":
		ev.Action, ev.Outcome, ev.Binding = schemas.ActionLogout, schemas.OutcomeSuccess, schemas.BindingStop
		ev.SrcAddr, ev.SrcPort = schemas.Addr{}, 0
	case "4768":
		ev.Action, ev.AuthMethod = schemas.ActionLogin, "kerberos"
		if st := strings.ToLower(get("Status")); st == "0x0" || st == "0" {
			ev.Outcome = schemas.OutcomeSuccess
		} else {
			ev.Outcome = schemas.OutcomeFailure
		}
	default:
		return ErrIgnored
	}
	if ev.Time == 0 {
		ev.Time = unixNano(meta.Received)
	}
	return nil
}

// textValue returns a JSON scalar as text, and {"#text"|"Value"|"value":
// …} objects as their text; other values give "".
func textValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return string(v)
	case map[string]any:
		for _, k := range []string{"#text", "Value", "value"} {
			if s, ok := v[k]; ok {
				return textValue(s)
			}
		}
	}
	return ""
}

// eventData returns event data as a flat object: an object as it is (its
// Data list, when it has one, flattened), or a list of named values.
func eventData(v any) map[string]any {
	switch v := v.(type) {
	case map[string]any:
		if list, ok := v["Data"].([]any); ok {
			return eventData(list)
		}
		return v
	case []any:
		m := map[string]any{}
		for _, e := range v {
			o, ok := e.(map[string]any)
			if !ok {
				continue
			}
			name := textValue(o["Name"])
			if name == "" {
				name = textValue(o["@Name"])
			}
			if name != "" {
				val := o["#text"]
				if val == nil {
					val = o["Value"]
				}
				m[name] = val
			}
		}
		return m
	}
	return nil
}
