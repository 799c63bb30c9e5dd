package parser

import (
	"bytes"
	"errors"
	"time"
)

// SyslogMessage is a syslog message split into its header fields and MSG.
// RFC 3164 messages have no MsgID; absent fields and RFC 5424 NILVALUEs
// ("-") are empty strings.
type SyslogMessage struct {
	Facility, Severity int
	// Timestamp is the header time, zero when the header has none or it
	// does not parse (the message is still accepted: callers fall back to
	// the receive time).
	Timestamp                        time.Time
	Hostname, AppName, ProcID, MsgID string
	// Message is the MSG part with a leading UTF-8 BOM stripped. It
	// aliases the input of ParseSyslog.
	Message []byte
}

var (
	errNoPRI         = errors.New("no <PRI> at start")
	errBadPRI        = errors.New("PRI out of range")
	errTruncated5424 = errors.New("RFC 5424 header truncated")
	errBadSD         = errors.New("unterminated RFC 5424 structured data")
)

// ParseSyslog parses one syslog message (RFC 5424 or RFC 3164, told apart
// by the VERSION after PRI) into out. now and loc date RFC 3164
// timestamps, which carry neither year nor zone: the year is now's year in
// loc (nil means UTC), or the previous year when that would put the
// message more than a day after now (a Dec 31 line received on Jan 1), or
// the next year for a January message received in December (a sender
// clock running ahead at new year).
//
// It tolerates what real senders do: a missing or unparseable timestamp,
// a missing RFC 3164 HOSTNAME (the token after the timestamp ends with
// ':'), "TAG[pid]:" and "TAG:" forms, an RFC 3164 message without a tag,
// runs of spaces between RFC 3164 header fields, trailing CR/LF/NUL bytes.
// It requires <PRI>. Failures are *ParseError with Format FormatSyslog.
//
// String fields of out that already hold the value being parsed are kept
// rather than reallocated, so a listener that reuses one SyslogMessage per
// connection allocates nothing for repeated hostnames and tags.
func ParseSyslog(b []byte, now time.Time, loc *time.Location, out *SyslogMessage) error {
	if len(b) > MaxLineLength {
		return tooLong(FormatSyslog)
	}
	for len(b) > 0 {
		if c := b[len(b)-1]; c != '\n' && c != '\r' && c != 0 {
			break
		}
		b = b[:len(b)-1]
	}
	if len(b) < 3 || b[0] != '<' {
		return &ParseError{Format: FormatSyslog, Reason: ReasonNoMatch, Err: errNoPRI}
	}
	pri, i := 0, 1
	for ; i < len(b) && i <= 4 && b[i] >= '0' && b[i] <= '9'; i++ {
		pri = pri*10 + int(b[i]-'0')
	}
	if i == 1 || i > 4 || i >= len(b) || b[i] != '>' {
		return &ParseError{Format: FormatSyslog, Reason: ReasonNoMatch, Err: errNoPRI}
	}
	if pri > 191 {
		return &ParseError{Format: FormatSyslog, Reason: ReasonNoMatch, Err: errBadPRI}
	}
	i++
	out.Facility, out.Severity = pri/8, pri%8
	out.Timestamp = time.Time{}
	out.MsgID = ""
	out.Message = nil
	if loc == nil {
		loc = time.UTC
	}
	// RFC 5424: VERSION (1-3 digits, not starting with 0) then SP.
	if i < len(b) && b[i] >= '1' && b[i] <= '9' {
		j := i + 1
		for j < len(b) && j < i+3 && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j < len(b) && b[j] == ' ' {
			return parse5424(b, j+1, out)
		}
	}
	parse3164(b, i, now, loc, out)
	return nil
}

func parse5424(b []byte, i int, out *SyslogMessage) error {
	var fields [5][]byte // TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
	for f := range fields {
		if i >= len(b) {
			return &ParseError{Format: FormatSyslog, Reason: ReasonNoMatch, Err: errTruncated5424}
		}
		fields[f], i = token(b, i)
		if i < len(b) {
			i++ // the SP
		} else if f < len(fields)-1 {
			return &ParseError{Format: FormatSyslog, Reason: ReasonNoMatch, Err: errTruncated5424}
		}
	}
	if ts := fields[0]; !isNil(ts) {
		if t, n, ok := parseRFC3339(ts); ok && n == len(ts) {
			out.Timestamp = t
		}
	}
	setString(&out.Hostname, nilToEmpty(fields[1]))
	setString(&out.AppName, nilToEmpty(fields[2]))
	setString(&out.ProcID, nilToEmpty(fields[3]))
	setString(&out.MsgID, nilToEmpty(fields[4]))
	// STRUCTURED-DATA: "-" or one or more [ID PARAM="VALUE"...] elements,
	// where VALUE escapes '"', '\' and ']' with a backslash. Senders that
	// omit it entirely are tolerated: the rest is MSG.
	switch {
	case i >= len(b):
		return nil
	case b[i] == '-' && (i+1 == len(b) || b[i+1] == ' '):
		i++
	case b[i] == '[':
		for i < len(b) && b[i] == '[' {
			end := skipSDElement(b, i+1)
			if end < 0 {
				return &ParseError{Format: FormatSyslog, Reason: ReasonNoMatch, Err: errBadSD}
			}
			i = end
		}
	}
	if i < len(b) && b[i] == ' ' {
		i++
	}
	out.Message = bytes.TrimPrefix(b[i:], []byte("\xef\xbb\xbf"))
	return nil
}

// skipSDElement returns the index after the ']' closing the element whose
// content starts at b[i], or -1.
func skipSDElement(b []byte, i int) int {
	quoted := false
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ']' && !quoted:
			return i + 1
		}
	}
	return -1
}

func isNil(b []byte) bool { return len(b) == 1 && b[0] == '-' }

func nilToEmpty(b []byte) []byte {
	if isNil(b) {
		return nil
	}
	return b
}

// setString stores b in *dst, reusing *dst when it already holds b.
func setString(dst *string, b []byte) {
	if *dst != string(b) {
		*dst = internApp(b)
	}
}

// internApp returns constant strings for common tags to avoid allocating.
func internApp(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "sshd":
		return "sshd"
	case "sshd-session":
		return "sshd-session"
	case "nginx":
		return "nginx"
	case "apache2":
		return "apache2"
	case "httpd":
		return "httpd"
	}
	return string(b)
}

func parse3164(b []byte, i int, now time.Time, loc *time.Location, out *SyslogMessage) {
	hostname := []byte(nil)
	if t, n, ok := parse3164Time(b[i:], now, loc); ok {
		out.Timestamp = t
		i = skipSpaces(b, i+n)
		// HOSTNAME, unless the next token is already the tag.
		tok, end := token(b, i)
		if len(tok) > 0 && tok[len(tok)-1] != ':' {
			hostname = tok
			i = skipSpaces(b, end)
		}
	}
	setString(&out.Hostname, hostname)
	app, pid, msg := splitTag(b[i:])
	setString(&out.AppName, app)
	setString(&out.ProcID, pid)
	out.Message = bytes.TrimPrefix(msg, []byte("\xef\xbb\xbf"))
}

// splitTag splits "TAG[PID]: MSG" or "TAG: MSG". Content without a tag is
// all MSG.
func splitTag(b []byte) (app, pid, msg []byte) {
	for j := 0; j < len(b); j++ {
		switch b[j] {
		case ' ':
			return nil, nil, b
		case ':':
			if j == 0 || (j+1 < len(b) && b[j+1] != ' ') {
				return nil, nil, b
			}
			return b[:j], nil, trimOneSpace(b[j+1:])
		case '[':
			end := bytes.IndexByte(b[j:], ']')
			if j == 0 || end < 0 {
				return nil, nil, b
			}
			k := j + end + 1
			if k < len(b) && b[k] == ':' {
				k++
			}
			if k < len(b) && b[k] != ' ' {
				return nil, nil, b
			}
			return b[:j], b[j+1 : j+end], trimOneSpace(b[k:])
		}
	}
	return nil, nil, b
}

func trimOneSpace(b []byte) []byte {
	if len(b) > 0 && b[0] == ' ' {
		return b[1:]
	}
	return b
}

// parse3164Time parses the RFC 3164 "Mmm dd hh:mm:ss" timestamp (day
// space- or zero-padded, an optional fraction as some senders add), or an
// RFC 3339 timestamp in its place as rsyslog writes with high-precision
// templates (also without a zone, then in loc). It returns the time and
// the bytes consumed.
func parse3164Time(b []byte, now time.Time, loc *time.Location) (time.Time, int, bool) {
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		t, n, ok := parseRFC3339(b)
		if !ok {
			t, n, ok = parseISOLocal(b, loc)
		}
		if !ok || (n < len(b) && b[n] != ' ') {
			return time.Time{}, 0, false
		}
		return t, n, true
	}
	mo, ok := parseMonth(b, 0)
	if !ok || len(b) < 15 || b[3] != ' ' {
		return time.Time{}, 0, false
	}
	i := 4
	if b[i] == ' ' {
		i++
	}
	d := 0
	for start := i; i < len(b) && i < start+2 && b[i] >= '0' && b[i] <= '9'; i++ {
		d = d*10 + int(b[i]-'0')
	}
	if i+9 > len(b) || b[i] != ' ' || b[i+3] != ':' || b[i+6] != ':' {
		return time.Time{}, 0, false
	}
	h, ok1 := digits2(b, i+1)
	mi, ok2 := digits2(b, i+4)
	s, ok3 := digits2(b, i+7)
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, 0, false
	}
	ns, n := parseFraction(b, i+9)
	if n < len(b) && b[n] != ' ' {
		return time.Time{}, 0, false
	}
	local := now.In(loc)
	year := local.Year()
	if mo == time.January && local.Month() == time.December {
		// A sender whose clock runs ahead logs Jan 1 before our Dec 31 ends.
		year++
	}
	if !validDate(year, mo, d, h, mi, s) {
		// Feb 29 logged in a leap year, received in the next one.
		year--
		if !validDate(year, mo, d, h, mi, s) {
			return time.Time{}, 0, false
		}
	}
	t := time.Date(year, mo, d, h, mi, s, ns, loc)
	if t.Sub(now) > 24*time.Hour {
		t = time.Date(year-1, mo, d, h, mi, s, ns, loc)
	}
	return t, n, true
}

// parseISOLocal parses "2006-01-02T15:04:05[.frac]" without a zone, as
// some syslog templates write it, as a time in loc.
func parseISOLocal[T text](b T, loc *time.Location) (time.Time, int, bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, 0, false
	}
	if c := b[10]; c != 'T' && c != 't' && c != ' ' {
		return time.Time{}, 0, false
	}
	y, ok1 := digits4(b, 0)
	mo, ok2 := digits2(b, 5)
	d, ok3 := digits2(b, 8)
	h, ok4 := digits2(b, 11)
	mi, ok5 := digits2(b, 14)
	s, ok6 := digits2(b, 17)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || !validDate(y, time.Month(mo), d, h, mi, s) {
		return time.Time{}, 0, false
	}
	ns, i := parseFraction(b, 19)
	return time.Date(y, time.Month(mo), d, h, mi, s, ns, loc), i, true
}
