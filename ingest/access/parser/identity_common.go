package parser

import (
	"bytes"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// Identity-source formats share these helpers: daemons that write their
// own log files prefix lines with a syslog-style "TIME [HOST] TAG[PID]: ",
// which stripFilePrefix removes (syslog listeners have removed it already).

// stripFilePrefix removes a leading "Mmm dd hh:mm:ss [HOST] TAG[PID]: "
// (an RFC 3339 or "2006-01-02 15:04:05" time in its place, krb5's
// "TAG[PID](info): " too) whose tag name isTag accepts, or the time alone
// when no such tag follows (OpenVPN's own log file), or a bare
// "TAG[PID]: ". It returns the message and the time and host found (zero
// when absent).
func stripFilePrefix(line []byte, meta *Meta, isTag func(app []byte) bool) (msg []byte, t time.Time, host []byte) {
	msg = bytes.TrimRight(line, " \r\n")
	msg = msg[skipSpaces(msg, 0):]
	tt, n, ok := parse3164Time(msg, meta.Received, meta.location())
	if !ok {
		if rest, ok := cutTag(msg, isTag); ok {
			return rest, time.Time{}, nil
		}
		return msg, time.Time{}, nil
	}
	i := skipSpaces(msg, n)
	if rest, ok := cutTag(msg[i:], isTag); ok {
		return rest, tt, nil
	}
	h, end := token(msg, i)
	if rest, ok := cutTag(msg[skipSpaces(msg, end):], isTag); ok {
		return rest, tt, h
	}
	return msg[i:], tt, nil
}

// cutTag removes a leading "NAME[PID]: ", "NAME: " or "NAME[PID](LEVEL): "
// whose NAME isTag accepts.
func cutTag(b []byte, isTag func(app []byte) bool) ([]byte, bool) {
	tok, end := token(b, 0)
	if len(tok) < 2 || tok[len(tok)-1] != ':' {
		return b, false
	}
	name := tok[:len(tok)-1]
	if k := bytes.IndexAny(name, "[("); k >= 0 {
		name = name[:k]
	}
	if len(name) == 0 || !isTag(name) {
		return b, false
	}
	return b[skipSpaces(b, end):], true
}

// normalizeMAC writes a MAC address (aa:bb:…, AA-BB-…, aabb.ccdd.eeff,
// or 12 hex digits) as lowercase colon-separated pairs; other strings
// (DUIDs, phone numbers in Calling-Station-Id) come back unchanged but
// for surrounding spaces.
func normalizeMAC(s string) string {
	s = strings.TrimSpace(s)
	var hex [12]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		case c == ':' || c == '-' || c == '.':
			continue
		default:
			return s
		}
		if n == len(hex) {
			return s
		}
		hex[n] = c
		n++
	}
	if n != 12 {
		return s
	}
	// The separators must be regular: aa:bb:cc:dd:ee:ff, aa-bb-…,
	// aabb.ccdd.eeff, or none.
	switch len(s) {
	case 12, 14, 17:
	default:
		return s
	}
	var b strings.Builder
	b.Grow(17)
	for i := 0; i < 12; i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteByte(hex[i])
		b.WriteByte(hex[i+1])
	}
	return b.String()
}

// addrPort parses "ADDR", "ADDR:PORT", "[ADDR]:PORT", an IPv6 address
// with the port after its last colon as OpenVPN writes it
// ("2001:db8::7:51234" is tried as an address first), and OpenVPN's
// "[AF_INET]"/"[AF_INET6]" prefixes.
func addrPort(s string) (schemas.Addr, uint16, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "[AF_INET6]"), "[AF_INET]")
	if a, ok := parseAddr(s); ok {
		return a, 0, true
	}
	host, port := splitHostPort(s)
	if port == "" {
		if i := strings.LastIndexByte(s, ':'); i > 0 {
			host, port = s[:i], s[i+1:]
		}
	}
	a, ok := parseAddr(host)
	if !ok {
		return schemas.Addr{}, 0, false
	}
	p, ok := parsePort(port)
	if !ok {
		return schemas.Addr{}, 0, false
	}
	return a, p, true
}

// unixSeconds returns t (Unix seconds) as Unix ns, 0 for 0 or out of range.
func unixSeconds(t int64) uint64 {
	if t <= 0 || t > 1<<33 {
		return 0
	}
	return uint64(t) * uint64(time.Second)
}
