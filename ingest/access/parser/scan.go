package parser

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// text is what the scanning helpers accept, so the same code serves raw
// lines and strings decoded from JSON without conversions.
type text interface{ ~string | ~[]byte }

// parseAddr parses an IPv4 or IPv6 address (an IPv6 zone is dropped).
// IPv4, the common case, is parsed by hand without allocating.
func parseAddr[T text](b T) (schemas.Addr, bool) {
	if len(b) == 0 {
		return schemas.Addr{}, false
	}
	if indexByte(b, ':') >= 0 {
		return parseAddr6(string(b))
	}
	var v4 [4]byte
	octet, digits, n := 0, 0, 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			if digits > 0 && octet == 0 { // no leading zeros, as netip
				return schemas.Addr{}, false
			}
			octet = octet*10 + int(c-'0')
			digits++
			if octet > 255 {
				return schemas.Addr{}, false
			}
		case c == '.':
			if digits == 0 || n == 3 {
				return schemas.Addr{}, false
			}
			v4[n] = byte(octet)
			n++
			octet, digits = 0, 0
		default:
			return schemas.Addr{}, false
		}
	}
	if n != 3 || digits == 0 {
		return schemas.Addr{}, false
	}
	v4[3] = byte(octet)
	return schemas.AddrFrom4(v4), true
}

func parseAddr6(s string) (schemas.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return schemas.Addr{}, false
	}
	return schemas.AddrFromNetip(ip), true
}

// splitHostPort splits "host", "host:port", "[v6]:port" and a bare IPv6
// address; port is empty when absent.
func splitHostPort[T text](b T) (host, port T) {
	if len(b) > 0 && b[0] == '[' {
		end := indexByte(b, ']')
		if end < 0 {
			return b, port
		}
		if rest := b[end+1:]; len(rest) > 1 && rest[0] == ':' {
			port = rest[1:]
		}
		return b[1:end], port
	}
	c := indexByte(b, ':')
	if c < 0 || indexByte(b[c+1:], ':') >= 0 {
		return b, port
	}
	return b[:c], b[c+1:]
}

func indexByte[T text](b T, c byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// parseUint parses a decimal number of at most 9 digits.
func parseUint[T text](b T) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func parsePort[T text](b T) (uint16, bool) {
	n, ok := parseUint(b)
	if !ok || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// digits2 reads two decimal digits at b[i:].
func digits2[T text](b T, i int) (int, bool) {
	if i+2 > len(b) {
		return 0, false
	}
	c0, c1 := b[i], b[i+1]
	if c0 < '0' || c0 > '9' || c1 < '0' || c1 > '9' {
		return 0, false
	}
	return int(c0-'0')*10 + int(c1-'0'), true
}

func digits4[T text](b T, i int) (int, bool) {
	hi, ok1 := digits2(b, i)
	lo, ok2 := digits2(b, i+2)
	return hi*100 + lo, ok1 && ok2
}

// parseMonth reads a three-letter English month abbreviation ("Jan"),
// ignoring case.
func parseMonth[T text](b T, i int) (time.Month, bool) {
	if i+3 > len(b) {
		return 0, false
	}
	const names = "janfebmaraprmayjunjulaugsepoctnovdec"
	c0, c1, c2 := b[i]|0x20, b[i+1]|0x20, b[i+2]|0x20
	for m := 0; m < 12; m++ {
		if names[3*m] == c0 && names[3*m+1] == c1 && names[3*m+2] == c2 {
			return time.Month(m + 1), true
		}
	}
	return 0, false
}

// validDate reports whether the fields name a real instant (time.Date
// would normalise Feb 30 to Mar 2 instead).
func validDate(y int, mo time.Month, d, h, mi, s int) bool {
	if mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60 {
		return false
	}
	return d <= time.Date(y, mo+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// parseFraction reads ".ddd…" at b[i:] and returns nanoseconds and the
// index after it; no fraction gives (0, i).
func parseFraction[T text](b T, i int) (ns, end int) {
	if i >= len(b) || (b[i] != '.' && b[i] != ',') {
		return 0, i
	}
	i++
	scale := 100_000_000
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		ns += int(b[i]-'0') * scale
		scale /= 10
	}
	return ns, i
}

// parseRFC3339 parses "2006-01-02T15:04:05[.frac](Z|±07:00)" (also with a
// space or lower-case t/z, and ±0700) and returns the time in UTC and the
// length consumed. It does not allocate.
func parseRFC3339[T text](b T) (time.Time, int, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' {
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
	if i >= len(b) {
		return time.Time{}, 0, false
	}
	var offset int
	switch b[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		oh, ok1 := digits2(b, i+1)
		j := i + 3
		if j < len(b) && b[j] == ':' {
			j++
		}
		om, ok2 := digits2(b, j)
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return time.Time{}, 0, false
		}
		offset = (oh*60 + om) * 60
		if b[i] == '-' {
			offset = -offset
		}
		i = j + 2
	default:
		return time.Time{}, 0, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC)
	return t.Add(-time.Duration(offset) * time.Second), i, true
}

// skipSpaces returns the index of the first non-space byte at or after i.
func skipSpaces(b []byte, i int) int {
	for i < len(b) && b[i] == ' ' {
		i++
	}
	return i
}

// token returns the bytes from i to the next space (or the end) and the
// index of that space.
func token(b []byte, i int) ([]byte, int) {
	j := bytes.IndexByte(b[i:], ' ')
	if j < 0 {
		return b[i:], len(b)
	}
	return b[i : i+j], i + j
}
