package parser

import (
	"bytes"
	"errors"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// webParser parses the NCSA common and combined access-log formats that
// nginx and Apache write by default:
//
//	ADDR IDENT USER [02/Jan/2006:15:04:05 -0700] "METHOD URI PROTO" STATUS BYTES ["REFERER" "USER-AGENT"]
//
// Fields after the user agent (custom log_format additions) are ignored.
// Apache's vhost_combined ("HOST:PORT ADDR …") fills DstHost and DstPort.
//
// Action is the METHOD and Resource the URI path without its query
// string; a request line that is not "METHOD URI [PROTO]" ("-", a TLS
// handshake sent to a plain-text port…) leaves both empty and the line is
// still an event. Escapes in the request and user agent (nginx \xHH,
// Apache \") are kept as written.
//
// Outcome is denied for 401, 403 and 407 and success otherwise: the
// request reached the server, even when it answered 5xx.
type webParser struct{ format Format }

var (
	errWebNoTime    = errors.New("no [time] field")
	errWebNoRequest = errors.New("no quoted request field")
	errWebNoStatus  = errors.New("no 3-digit status")
	errWebBadTime   = errors.New("time is not dd/Mon/yyyy:hh:mm:ss ±hhmm")
)

func (p webParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(p.format)
	}
	reset(ev, string(p.format), &meta)
	b := bytes.TrimRight(line, " \r\n")

	// ADDR, or vhost_combined's "HOST[:PORT] ADDR".
	addrTok, i := token(b, skipSpaces(b, 0))
	addr, addrOK := parseAddr(addrTok)
	if !addrOK {
		next, end := token(b, skipSpaces(b, i))
		if a, ok := parseAddr(next); ok && len(addrTok) > 0 {
			host, port := splitHostPort(addrTok)
			ev.DstHost = string(host)
			ev.DstPort, _ = parsePort(port)
			addr, addrOK, addrTok, i = a, true, next, end
		}
	}
	// IDENT (always "-" in practice), then USER up to the " [" of the time.
	_, i = token(b, skipSpaces(b, i))
	open := bytes.IndexByte(b[i:], '[')
	if open < 0 {
		return &ParseError{Format: p.format, Reason: ReasonNoMatch, Err: errWebNoTime}
	}
	open += i
	user := bytes.TrimSpace(b[i:open])
	closing := bytes.IndexByte(b[open:], ']')
	if closing < 0 {
		return &ParseError{Format: p.format, Reason: ReasonNoMatch, Err: errWebNoTime}
	}
	closing += open
	t, timeOK := parseCLFTime(b[open+1 : closing])

	// "REQUEST"
	i = skipSpaces(b, closing+1)
	if i >= len(b) || b[i] != '"' {
		return &ParseError{Format: p.format, Reason: ReasonNoMatch, Err: errWebNoRequest}
	}
	request, i, ok := quoted(b, i)
	if !ok {
		return &ParseError{Format: p.format, Reason: ReasonNoMatch, Err: errWebNoRequest}
	}
	// STATUS
	statusTok, i := token(b, skipSpaces(b, i))
	status, ok := parseUint(statusTok)
	if !ok || len(statusTok) != 3 {
		return &ParseError{Format: p.format, Reason: ReasonNoMatch, Err: errWebNoStatus}
	}
	// The line has the format's shape: report field errors now.
	if !addrOK {
		return parseErr(p.format, ReasonBadAddress, "bad client address %q", addrTok)
	}
	if !timeOK {
		return &ParseError{Format: p.format, Reason: ReasonBadTime, Err: errWebBadTime}
	}
	// BYTES, then the optional "REFERER" "USER-AGENT" of combined.
	_, i = token(b, skipSpaces(b, i))
	if i = skipSpaces(b, i); i < len(b) && b[i] == '"' {
		if _, i, ok = quoted(b, i); ok {
			if i = skipSpaces(b, i); i < len(b) && b[i] == '"' {
				if ua, _, ok := quoted(b, i); ok && !isDash(ua) {
					ev.UserAgent = string(ua)
				}
			}
		}
	}

	ev.Time = unixNano(t)
	ev.SrcAddr = addr
	if !isDash(user) {
		ev.User = string(user)
	}
	ev.Status = int32(status)
	switch status {
	case 401, 403, 407:
		ev.Outcome = schemas.OutcomeDenied
	default:
		ev.Outcome = schemas.OutcomeSuccess
	}
	if method, path, ok := splitRequest(request); ok {
		ev.Action = httpMethod(method)
		ev.Resource = string(path)
	}
	return nil
}

func isDash(b []byte) bool { return len(b) == 0 || (len(b) == 1 && b[0] == '-') }

// quoted returns the content of the double-quoted field starting at
// b[i] == '"' (a backslash escapes the next byte) and the index after
// the closing quote.
func quoted(b []byte, i int) ([]byte, int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return b[i+1 : j], j + 1, true
		}
	}
	return nil, len(b), false
}

// splitRequest splits "METHOD URI [PROTO]" and returns the method and the
// URI without its query string.
func splitRequest(r []byte) (method, path []byte, ok bool) {
	sp := bytes.IndexByte(r, ' ')
	if sp <= 0 {
		return nil, nil, false
	}
	method = r[:sp]
	for _, c := range method {
		if !(c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return nil, nil, false
		}
	}
	uri := bytes.TrimSpace(r[sp+1:])
	if last := bytes.LastIndexByte(uri, ' '); last >= 0 && bytes.HasPrefix(uri[last+1:], []byte("HTTP/")) {
		uri = bytes.TrimSpace(uri[:last])
	}
	if len(uri) == 0 {
		return nil, nil, false
	}
	if q := bytes.IndexByte(uri, '?'); q >= 0 {
		uri = uri[:q]
	}
	return method, uri, true
}

// httpMethod returns constant strings for the common methods.
func httpMethod(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "HEAD":
		return "HEAD"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "PATCH":
		return "PATCH"
	case "OPTIONS":
		return "OPTIONS"
	case "CONNECT":
		return "CONNECT"
	}
	return string(m)
}

// parseCLFTime parses the common log format time "02/Jan/2006:15:04:05 -0700".
func parseCLFTime(b []byte) (time.Time, bool) {
	if len(b) != 26 || b[2] != '/' || b[6] != '/' || b[11] != ':' || b[14] != ':' || b[17] != ':' || b[20] != ' ' {
		return time.Time{}, false
	}
	d, ok1 := digits2(b, 0)
	mo, ok2 := parseMonth(b, 3)
	y, ok3 := digits4(b, 7)
	h, ok4 := digits2(b, 12)
	mi, ok5 := digits2(b, 15)
	s, ok6 := digits2(b, 18)
	oh, ok7 := digits2(b, 22)
	om, ok8 := digits2(b, 24)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8) || !validDate(y, mo, d, h, mi, s) || om > 59 {
		return time.Time{}, false
	}
	offset := (oh*60 + om) * 60
	switch b[21] {
	case '-':
		offset = -offset
	case '+':
	default:
		return time.Time{}, false
	}
	t := time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), true
}
