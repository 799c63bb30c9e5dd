package parser

import (
	"bytes"
	"errors"
	"net/netip"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// webParser parses the NCSA common and combined access-log formats that
// nginx and Apache write by default, and the usual additions in front of
// them:
//
//	[VHOST[:PORT]] CLIENTS IDENT USER [02/Jan/2006:15:04:05 -0700] "METHOD URI PROTO" STATUS BYTES ["REFERER" "USER-AGENT"]
//
// CLIENTS is the peer address ($remote_addr, %h), or an X-Forwarded-For
// chain in one of the shapes log formats produce:
//
//	203.0.113.7                          direct client
//	203.0.113.7, 10.0.0.1                $proxy_add_x_forwarded_for: XFF, then the peer
//	"203.0.113.7, 10.0.0.1" 10.0.0.2     "$http_x_forwarded_for" $remote_addr
//	203.0.113.7, 10.0.0.1 10.0.0.2       the same unquoted
//
// The client is the first entry of the chain (SrcAddr, and SrcPort when
// the entry has a port), except that private addresses in front of a
// public one are skipped (see chainClient); the whole chain, peer last,
// is kept in ForwardedFor. An entry may be an address, "unix:" (nginx's peer on a
// Unix socket), or a host name ("localhost", Apache with HostnameLookups,
// a proxy's "unknown"): such a client gives no SrcAddr, never an address
// taken from elsewhere in the chain. A "-" chain (no header) means the
// peer is the client. VHOST ("$host", Apache's vhost_combined "%v:%p")
// fills DstHost, or DstAddr when it is an address, and DstPort.
//
// IDENT ("-" for nginx) and USER are one token each; USER "-" is no
// user. A line whose fields do not have this shape (an address or list
// entry where IDENT or USER belong, more address groups than the shapes above, an entry that is
// neither an address nor a host name) is rejected rather than guessed at,
// so a junk user never reaches the identity bindings.
//
// Action is the METHOD and Resource the URI path without its query
// string; a request line that is not "METHOD URI [PROTO]" ("-", a TLS
// handshake sent to a plain-text port…) leaves both empty and the line is
// still an event. Escapes in the request and user agent (nginx \xHH,
// Apache \") are kept as written. Fields after the user agent (custom
// log_format additions) are ignored.
//
// Outcome follows ECS: denied for 401, 403 and 407 (flowaudit's
// refinement of failure), failure for other 4xx and 5xx, success below
// 400.
type webParser struct{ format Format }

var (
	errWebNoTime    = errors.New("no [time] field")
	errWebNoRequest = errors.New("no quoted request field")
	errWebNoStatus  = errors.New("no 3-digit status")
	errWebBadTime   = errors.New("time is not dd/Mon/yyyy:hh:mm:ss ±hhmm")
	errWebFields    = errors.New("need CLIENT IDENT USER before the [time]")
)

// maxWebTokens bounds the fields before the [time]: a vhost, a chain of
// at most maxWebChain entries, the peer, IDENT and USER.
const (
	maxWebTokens = 24
	maxWebChain  = 16
)

// span is b[start:end] of the line; quoted marks a "…" field (without
// its quotes).
type span struct {
	start, end int
	quoted     bool
}

func (p webParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(p.format)
	}
	reset(ev, string(p.format), &meta)
	b := bytes.TrimRight(line, " \r\n")

	// The fields before the [time].
	var toks [maxWebTokens]span
	n, open, ok := webPrefix(b, &toks)
	if open < 0 {
		return &ParseError{Format: p.format, Reason: ReasonNoMatch, Err: errWebNoTime}
	}
	closing := bytes.IndexByte(b[open:], ']')
	if closing < 0 {
		return &ParseError{Format: p.format, Reason: ReasonNoMatch, Err: errWebNoTime}
	}
	closing += open
	t, timeOK := parseCLFTime(b[open+1 : closing])

	// "REQUEST"
	i := skipSpaces(b, closing+1)
	if i >= len(b) || b[i] != '"' {
		return &ParseError{Format: p.format, Reason: ReasonNoMatch, Err: errWebNoRequest}
	}
	request, i, rok := quoted(b, i)
	if !rok {
		return &ParseError{Format: p.format, Reason: ReasonNoMatch, Err: errWebNoRequest}
	}
	// STATUS
	statusTok, i := token(b, skipSpaces(b, i))
	status, sok := parseUint(statusTok)
	if !sok || len(statusTok) != 3 {
		return &ParseError{Format: p.format, Reason: ReasonNoMatch, Err: errWebNoStatus}
	}
	// The line has the format's shape: report field errors now.
	if !ok || n < 3 {
		return parseErr(p.format, ReasonNoMatch, "%v, found %d fields", errWebFields, n)
	}
	if err := p.identity(b, toks[n-2], toks[n-1], ev); err != nil {
		return err
	}
	if err := p.clients(b, toks[:n-2], ev); err != nil {
		return err
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
	ev.Status = int32(status)
	ev.Outcome = httpOutcome(status)
	if method, path, ok := splitRequest(request); ok {
		ev.Action = httpMethod(method)
		ev.Resource = string(path)
	}
	return nil
}

// httpOutcome maps an HTTP status to an Outcome (see webParser).
func httpOutcome(status int) schemas.Outcome {
	switch {
	case status == 401 || status == 403 || status == 407:
		return schemas.OutcomeDenied
	case status >= 400:
		return schemas.OutcomeFailure
	}
	return schemas.OutcomeSuccess
}

// webPrefix splits the fields before the [time] into toks (a "…" field
// is one token) and returns their number and the index of the '[' that
// opens the time; open is -1 when there is none. ok is false when there
// are more fields than toks holds or a quote is not closed.
//
// The time is the first '['-field shaped like one ("[dd/Mon/…]", 26
// bytes); failing that, the first '['-field after two others, so that a
// malformed time is reported as such.
func webPrefix(b []byte, toks *[maxWebTokens]span) (n, open int, ok bool) {
	ok = true
	fallback, fallbackN := -1, 0
	for i := skipSpaces(b, 0); i < len(b); i = skipSpaces(b, i) {
		switch b[i] {
		case '[':
			if i+27 < len(b) && b[i+27] == ']' && b[i+3] == '/' {
				return n, i, ok
			}
			if fallback < 0 && n >= 2 {
				fallback, fallbackN = i, n
			}
		case '"':
			_, end, closed := quoted(b, i)
			if !closed {
				if fallback >= 0 {
					return fallbackN, fallback, false
				}
				return n, -1, false
			}
			if n < len(toks) {
				toks[n] = span{start: i + 1, end: end - 1, quoted: true}
			} else {
				ok = false
			}
			n++
			i = end
			continue
		}
		_, end := token(b, i)
		if n < len(toks) {
			toks[n] = span{start: i, end: end}
		} else {
			ok = false
		}
		n++
		i = end
	}
	if fallback >= 0 {
		return fallbackN, fallback, ok
	}
	return n, -1, false
}

// identity checks IDENT and USER and sets ev.User. Either holding an
// address or a list entry means the fields are shifted (an address group
// the parser does not know): the line is rejected, never bound. nginx
// always writes IDENT as "-", so for nginx anything else is a shift too;
// Apache's %l may hold an identd answer.
func (p webParser) identity(b []byte, ident, user span, ev *schemas.AccessEvent) error {
	if v := b[ident.start:ident.end]; p.format == FormatNginx && (ident.quoted || string(v) != "-") {
		return parseErr(p.format, ReasonBadUser, "field %q before the user is not nginx's \"-\": the fields before the [time] are not CLIENT - USER", v)
	}
	for _, f := range [2]span{ident, user} {
		v := b[f.start:f.end]
		if len(v) == 0 && !f.quoted {
			return parseErr(p.format, ReasonNoMatch, "%v, found an empty field", errWebFields)
		}
		if bytes.ContainsAny(v, " \t,") {
			return parseErr(p.format, ReasonBadUser, "ident/user field %q holds a space or a list", v)
		}
		if _, isAddr := parseAddr(v); isAddr {
			return parseErr(p.format, ReasonBadUser, "ident/user field %q is an address: the fields before the [time] are not CLIENT IDENT USER", v)
		}
	}
	if u := b[user.start:user.end]; !isDash(u) {
		ev.User = string(u)
	}
	return nil
}

// group is one address field: a "…" list, or unquoted entries joined by
// commas ("a, b" is two tokens).
type group struct {
	first, last int // indexes into the entries
	quoted      bool
}

// clients parses the address fields before IDENT (see webParser) into
// ev.SrcAddr, SrcPort, ForwardedFor, DstHost, DstAddr and DstPort.
func (p webParser) clients(b []byte, toks []span, ev *schemas.AccessEvent) error {
	if len(toks) == 0 {
		return parseErr(p.format, ReasonNoMatch, "%v, found no client", errWebFields)
	}
	var entries [maxWebChain + 2]span
	var groups [3]group
	ne, ng := 0, 0
	open := false // the previous unquoted token ended with a comma
	for _, tk := range toks {
		if !open || tk.quoted {
			if ng == len(groups) {
				return parseErr(p.format, ReasonBadAddress, "more than 3 address fields before IDENT (VHOST, X-Forwarded-For, peer)")
			}
			groups[ng] = group{first: ne, quoted: tk.quoted}
			ng++
		}
		// Split on commas.
		open = false
		for s := tk.start; s <= tk.end; {
			c := bytes.IndexByte(b[s:tk.end], ',')
			e := tk.end
			if c >= 0 {
				e = s + c
			}
			if v := bytes.TrimSpace(b[s:e]); len(v) > 0 {
				if ne == len(entries) {
					return parseErr(p.format, ReasonBadAddress, "X-Forwarded-For chain longer than %d entries", maxWebChain)
				}
				start := s + bytes.Index(b[s:e], v)
				entries[ne] = span{start: start, end: start + len(v)}
				ne++
			} else if c < 0 && !tk.quoted {
				open = true // "a," ends the token: the list goes on
			}
			if c < 0 {
				break
			}
			s = e + 1
		}
		groups[ng-1].last = ne - 1
	}
	single := func(g group) bool { return !g.quoted && g.first == g.last }
	var chain [maxWebChain + 2]int // indexes of the entries of the chain, client first
	nc := 0
	add := func(g group) {
		for k := g.first; k <= g.last; k++ {
			chain[nc] = k
			nc++
		}
	}
	vhost := -1
	switch ng {
	case 1:
		add(groups[0])
	case 2:
		if single(groups[0]) && !isDash(entryOf(b, entries[groups[0].first])) { // VHOST CLIENTS
			vhost = groups[0].first
			add(groups[1])
			break
		}
		if !single(groups[1]) { // XFF PEER
			return parseErr(p.format, ReasonBadAddress, "the peer after an X-Forwarded-For list is not one address")
		}
		add(groups[0])
		add(groups[1])
	case 3:
		if !single(groups[0]) || !single(groups[2]) {
			return parseErr(p.format, ReasonBadAddress, "3 address fields must be VHOST, an X-Forwarded-For list and one peer")
		}
		vhost = groups[0].first
		add(groups[1])
		add(groups[2])
	}
	if ng > 1 && vhost < 0 || ng == 3 {
		// An X-Forwarded-For field of "-" is an absent header: the peer
		// is the client.
		if g := groups[ng-2]; g.first == g.last && isDash(entryOf(b, entries[g.first])) {
			chain[0], nc = chain[nc-1], 1
		}
	}
	if nc == 0 {
		return parseErr(p.format, ReasonBadAddress, "empty client field")
	}
	if vhost >= 0 {
		if err := p.vhost(entryOf(b, entries[vhost]), ev); err != nil {
			return err
		}
	}
	for _, k := range chain[:nc] {
		if v := entryOf(b, entries[k]); !validClient(v) {
			return parseErr(p.format, ReasonBadAddress, "bad client address %q", v)
		}
	}
	ev.SrcAddr, ev.SrcPort = chainClient(b, &entries, chain[:nc])
	if nc == 1 {
		return nil
	}
	var buf [256]byte
	xff := buf[:0]
	for i, k := range chain[:nc] {
		if i > 0 {
			xff = append(xff, ", "...)
		}
		xff = append(xff, entryOf(b, entries[k])...)
	}
	ev.ForwardedFor = string(xff)
	return nil
}

func entryOf(b []byte, s span) []byte { return b[s.start:s.end] }

// chainClient returns the client of an X-Forwarded-For chain: its first
// entry, unless that is a private address and a public address follows.
// Private entries in front of a public hop were added on a network on the
// far side of the Internet (the client's own LAN or proxy, or a forged
// header): binding them would label the local hosts that share those
// addresses. The first public entry is then the client as the Internet
// saw it. A host name or "unix:" as the client gives no address.
func chainClient(b []byte, entries *[maxWebChain + 2]span, chain []int) (schemas.Addr, uint16) {
	first, firstPort, ok := entryAddr(entryOf(b, entries[chain[0]]))
	if !ok || len(chain) == 1 || !isPrivate(first) {
		return first, firstPort
	}
	for _, k := range chain[1:] {
		if a, port, ok := entryAddr(entryOf(b, entries[k])); ok && !isPrivate(a) {
			return a, port
		}
	}
	return first, firstPort
}

// entryAddr parses an address with an optional port ("a", "a:p",
// "[v6]:p"); ok is false for host names and "unix:".
func entryAddr(v []byte) (schemas.Addr, uint16, bool) {
	if a, ok := parseAddr(v); ok {
		return a, 0, true
	}
	if host, port := splitHostPort(v); len(port) > 0 {
		if a, ok := parseAddr(host); ok {
			p, _ := parsePort(port)
			return a, p, true
		}
	}
	return schemas.Addr{}, 0, false
}

// cgnat is RFC 6598 shared address space, private in practice.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// isPrivate reports whether a is not a public unicast address: RFC 1918
// and unique-local, loopback, link-local, shared (CGNAT) or unspecified.
func isPrivate(a schemas.Addr) bool {
	ip := a.Netip().Unmap()
	return ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || cgnat.Contains(ip)
}

// vhost parses "HOST[:PORT]" into DstAddr (HOST an address) or DstHost.
func (p webParser) vhost(v []byte, ev *schemas.AccessEvent) error {
	host, port := splitHostPort(v)
	if len(port) > 0 {
		n, ok := parsePort(port)
		if !ok {
			return parseErr(p.format, ReasonBadAddress, "bad virtual host port in %q", v)
		}
		ev.DstPort = n
	}
	if a, ok := parseAddr(host); ok {
		ev.DstAddr = a
		return nil
	}
	if !isHostname(host) {
		return parseErr(p.format, ReasonBadAddress, "bad virtual host %q", v)
	}
	ev.DstHost = string(host)
	return nil
}

// validClient reports whether an X-Forwarded-For entry or peer is an
// address (with an optional port), "unix:" or a host name.
func validClient(v []byte) bool {
	if _, ok := parseAddr(v); ok || string(v) == "unix:" || isHostname(v) {
		return true
	}
	host, port := splitHostPort(v)
	if len(port) == 0 {
		return false
	}
	if _, ok := parsePort(port); !ok {
		return false
	}
	_, ok := parseAddr(host)
	return ok || isHostname(host)
}

// isHostname reports whether v is a DNS-style name: letters, digits, '-',
// '_' and '.', starting with a letter or digit.
func isHostname(v []byte) bool {
	if len(v) == 0 || len(v) > 253 {
		return false
	}
	for i, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '-' || c == '_' || c == '.') && i > 0:
		default:
			return false
		}
	}
	return true
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
