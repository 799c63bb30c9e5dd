package parser

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/flowaudit/flowaudit/schemas"
)

// JSONMapping tells the generic JSON parser (FormatJSON) which key holds
// each AccessEvent field. A key is a dotted path for nested objects
// ("actor.name"); a key that itself contains dots ("source.ip", as in
// flattened ECS) is matched too, the literal key winning. An empty key
// leaves the field unmapped.
type JSONMapping struct {
	Time, User, SrcAddr, SrcPort, DstAddr, DstHost, DstPort, Resource, Action, Outcome, SessionID, Source string
	// Host, AuthMethod, Status, UserAgent and ForwardedFor map the
	// remaining AccessEvent fields.
	Host, AuthMethod, Status, UserAgent, ForwardedFor string
	// TimeLayout is a time.Parse layout for string times, interpreted in
	// Meta.Location when it has no zone. Empty accepts RFC 3339 strings
	// and Unix time numbers (seconds, optionally fractional, or
	// milliseconds, microseconds, nanoseconds, told apart by magnitude).
	TimeLayout string
	// SuccessValues, FailureValues and DeniedValues are the values of
	// the Outcome key meaning each outcome, compared without case. A nil
	// list takes the default: success, ok, allowed, accepted; failure,
	// failed, error; denied, forbidden, rejected.
	SuccessValues, FailureValues, DeniedValues []string
}

// DefaultJSONMapping returns the mapping of flowaudit's generic access
// event schema, whose keys are the AccessEvent field names in snake_case:
//
//	{"time": "2024-03-10T11:59:58Z", "source": "vpn", "host": "vpn-1",
//	 "user": "alice", "src_addr": "203.0.113.7", "src_port": 51234,
//	 "dst_addr": "10.2.0.10", "dst_host": "orders-db", "dst_port": 5432,
//	 "resource": "orders", "action": "login", "outcome": "success",
//	 "session_id": "s-1", "auth_method": "password", "status": 200,
//	 "user_agent": "curl/8.5.0", "forwarded_for": "203.0.113.7, 10.0.0.1"}
//
// Every key is optional, but an event needs at least one of user,
// src_addr, action and resource. src_addr and dst_addr may carry a port
// ("ip:port", "[ipv6]:port"); src_port and dst_port override it. source
// defaults to "json". outcome is a word (see JSONMapping) or a status
// code; without outcome, the status decides as for web logs (401, 403
// and 407 denied, other 4xx and 5xx failure, anything else success);
// with neither, the outcome is unknown.
func DefaultJSONMapping() JSONMapping {
	return JSONMapping{
		Time: "time", User: "user", SrcAddr: "src_addr", SrcPort: "src_port",
		DstAddr: "dst_addr", DstHost: "dst_host", DstPort: "dst_port",
		Resource: "resource", Action: "action", Outcome: "outcome",
		SessionID: "session_id", Source: "source",
		Host: "host", AuthMethod: "auth_method", Status: "status", UserAgent: "user_agent",
		ForwardedFor: "forwarded_for",
	}
}

type jsonParser struct {
	m        JSONMapping
	outcomes map[string]schemas.Outcome
}

func newJSONParser(m JSONMapping) (*jsonParser, error) {
	keys := []string{m.Time, m.User, m.SrcAddr, m.SrcPort, m.DstAddr, m.DstHost, m.DstPort,
		m.Resource, m.Action, m.Outcome, m.SessionID, m.Source, m.Host, m.AuthMethod, m.Status, m.UserAgent,
		m.ForwardedFor}
	if m.User == "" && m.SrcAddr == "" && m.Action == "" && m.Resource == "" {
		return nil, errors.New("JSON mapping needs at least one of User, SrcAddr, Action and Resource")
	}
	for _, k := range keys {
		if strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
			return nil, fmt.Errorf("JSON mapping key %q: empty path element", k)
		}
	}
	lists := [3][]string{m.SuccessValues, m.FailureValues, m.DeniedValues}
	for i, def := range [3][]string{defaultSuccessValues, defaultFailureValues, defaultDeniedValues} {
		if lists[i] == nil {
			lists[i] = def
		}
	}
	seen := map[string]bool{}
	for _, l := range lists {
		for _, w := range l {
			w = strings.ToLower(w)
			if seen[w] {
				return nil, fmt.Errorf("JSON mapping outcome value %q is listed twice", w)
			}
			seen[w] = true
		}
	}
	return &jsonParser{m: m, outcomes: outcomeWords(lists[0], lists[1], lists[2])}, nil
}

func (p *jsonParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(FormatJSON)
	}
	reset(ev, string(FormatJSON), &meta)
	var obj map[string]any
	if err := decodeObjectNumbers(line, &obj); err != nil {
		return &ParseError{Format: FormatJSON, Reason: ReasonBadJSON, Err: err}
	}
	m := &p.m
	str := func(key string) (string, bool) { return lookupString(obj, key) }

	user, hasUser := str(m.User)
	action, hasAction := str(m.Action)
	resource, hasResource := str(m.Resource)
	srcAddr, hasSrc := str(m.SrcAddr)
	if !hasUser && !hasAction && !hasResource && !hasSrc {
		return parseErr(FormatJSON, ReasonMissingField, "none of %q, %q, %q, %q", m.User, m.SrcAddr, m.Action, m.Resource)
	}
	if v, ok := lookup(obj, m.Time); ok && v != nil {
		switch v := v.(type) {
		case string:
			if v != "" {
				t, err := parseTimeString(v, m.TimeLayout, meta.location())
				if err != nil {
					return &ParseError{Format: FormatJSON, Reason: ReasonBadTime, Err: err}
				}
				ev.Time = unixNano(t)
			}
		case json.Number:
			t, err := parseUnixNumber(string(v))
			if err != nil {
				return &ParseError{Format: FormatJSON, Reason: ReasonBadTime, Err: err}
			}
			ev.Time = unixNano(t)
		default:
			return parseErr(FormatJSON, ReasonBadTime, "%q is neither a string nor a number", m.Time)
		}
	}
	if hasSrc {
		addr, port, err := hostPortValue(srcAddr)
		if err != nil {
			return &ParseError{Format: FormatJSON, Reason: ReasonBadAddress, Err: fmt.Errorf("%s: %w", m.SrcAddr, err)}
		}
		ev.SrcAddr, ev.SrcPort = addr, port
	}
	if s, ok := str(m.DstAddr); ok {
		addr, port, err := hostPortValue(s)
		if err != nil {
			return &ParseError{Format: FormatJSON, Reason: ReasonBadAddress, Err: fmt.Errorf("%s: %w", m.DstAddr, err)}
		}
		ev.DstAddr, ev.DstPort = addr, port
	}
	for _, pf := range []struct {
		key string
		dst *uint16
	}{{m.SrcPort, &ev.SrcPort}, {m.DstPort, &ev.DstPort}} {
		if s, ok := str(pf.key); ok && s != "" {
			port, ok := parsePort(s)
			if !ok {
				return parseErr(FormatJSON, ReasonBadAddress, "%s: bad port %q", pf.key, s)
			}
			*pf.dst = port
		}
	}
	ev.User, ev.Action, ev.Resource = user, action, resource
	if s, ok := str(m.Source); ok && s != "" {
		ev.Source = s
	}
	if s, ok := str(m.Host); ok && s != "" {
		ev.Host = s
	}
	ev.DstHost, _ = str(m.DstHost)
	ev.SessionID, _ = str(m.SessionID)
	ev.AuthMethod, _ = str(m.AuthMethod)
	ev.UserAgent, _ = str(m.UserAgent)
	ev.ForwardedFor, _ = str(m.ForwardedFor)
	status, hasStatus := 0, false
	if s, ok := str(m.Status); ok && s != "" {
		n, err := strconv.ParseInt(s, 10, 32)
		if err == nil {
			status, hasStatus = int(n), true
			ev.Status = int32(n)
		}
	}
	if s, ok := str(m.Outcome); ok && s != "" {
		if o, ok := p.outcomes[strings.ToLower(s)]; ok {
			ev.Outcome = o
		} else if n, err := strconv.Atoi(s); err == nil {
			status, hasStatus = n, true
		}
	}
	if ev.Outcome == schemas.OutcomeUnknown && hasStatus {
		ev.Outcome = httpOutcome(status)
	}
	return nil
}

// hostPortValue parses "ip", "ip:port" or "[ipv6]:port".
func hostPortValue(s string) (schemas.Addr, uint16, error) {
	if s == "" {
		return schemas.Addr{}, 0, nil
	}
	host, port := splitHostPort(s)
	addr, ok := parseAddr(host)
	if !ok {
		return schemas.Addr{}, 0, fmt.Errorf("bad address %q", s)
	}
	var p uint16
	if port != "" {
		if p, ok = parsePort(port); !ok {
			return schemas.Addr{}, 0, fmt.Errorf("bad port in %q", s)
		}
	}
	return addr, p, nil
}

// decodeObjectNumbers decodes one JSON object keeping numbers as
// json.Number, so ports and epoch times keep every digit.
func decodeObjectNumbers(line []byte, obj *map[string]any) error {
	i := 0
	for i < len(line) && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r') {
		i++
	}
	if i == len(line) || line[i] != '{' {
		return errNotObject
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if err := d.Decode(obj); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

// lookup finds key in obj: first as a literal key, then as a dotted path
// through nested objects, trying every split ("a.b.c" as a→b.c, a.b→c…).
func lookup(obj map[string]any, key string) (any, bool) {
	if key == "" || obj == nil {
		return nil, false
	}
	if v, ok := obj[key]; ok {
		return v, true
	}
	for i := 0; i < len(key); i++ {
		if key[i] != '.' {
			continue
		}
		inner, ok := obj[key[:i]].(map[string]any)
		if !ok {
			continue
		}
		if v, ok := lookup(inner, key[i+1:]); ok {
			return v, true
		}
	}
	return nil, false
}

// lookupString returns the value at key as a string: strings as they are,
// numbers as written, booleans as true/false. null, objects and arrays
// count as absent.
func lookupString(obj map[string]any, key string) (string, bool) {
	v, ok := lookup(obj, key)
	if !ok {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return string(v), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}
