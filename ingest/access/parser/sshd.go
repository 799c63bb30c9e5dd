package parser

import (
	"bytes"
	"errors"

	"github.com/flowaudit/flowaudit/schemas"
)

// sshdParser parses OpenSSH sshd messages.
//
// The line is normally the syslog MSG ("Accepted publickey for …"); the
// event Time is then meta.Received and the syslog listener overwrites it
// with the header timestamp. Two other shapes are accepted so that files
// can be tailed directly:
//
//   - "sshd[PID]: MSG" (also sshd-session, sshd-auth), the tag kept;
//   - an auth.log line "Mmm dd hh:mm:ss HOST TAG[PID]: MSG" (or with an
//     RFC 3339 timestamp, as rsyslog writes with high precision): Time and
//     Host come from the line, and lines of other programs (CRON, sudo,
//     systemd-logind…) return ErrIgnored.
//
// rsyslog's "message repeated N times: [ MSG]" is unwrapped into one event
// for MSG (the repeat count is lost).
//
// Disconnects have Outcome success when they end an authenticated
// connection and OutcomeUnknown before authentication: sshd tags the
// latter "[preauth]" or names an "authenticating" or "invalid" user.
type sshdParser struct{}

var (
	errSSHDUnknown = errors.New("unrecognised sshd message")
	errSSHDNoFrom  = errors.New(`no "from ADDR"`)
)

func (sshdParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(FormatSSHD)
	}
	reset(ev, string(FormatSSHD), &meta)
	msg := bytes.TrimRight(line, " \r\n")
	msg = msg[skipSpaces(msg, 0):]

	// auth.log line: timestamp, host, tag.
	if t, n, ok := parse3164Time(msg, meta.Received, meta.location()); ok {
		i := skipSpaces(msg, n)
		// HOST TAG, or TAG alone when the writer had no host name
		// ("Feb  9 21:20:08  sshd[8317]: …").
		host, end := token(msg, i)
		app, _, rest := splitTag(msg[i:])
		if app != nil {
			host = nil
		} else {
			app, _, rest = splitTag(msg[skipSpaces(msg, end):])
		}
		if app == nil {
			return parseErr(FormatSSHD, ReasonNoMatch, "syslog file line without a tag")
		}
		if !isSSHDTag(app) {
			return ErrIgnored
		}
		ev.Time = unixNano(t)
		if len(host) > 0 && string(host) != ev.Host {
			ev.Host = string(host)
		}
		msg = rest
	} else if bytes.HasPrefix(msg, []byte("sshd")) {
		if app, _, rest := splitTag(msg); isSSHDTag(app) {
			msg = rest
		}
	}
	msg = unwrapRepeated(msg[skipSpaces(msg, 0):])
	return parseSSHDMessage(msg, ev)
}

func isSSHDTag(app []byte) bool {
	switch string(app) {
	case "sshd", "sshd-session", "sshd-auth":
		return true
	}
	return false
}

// unwrapRepeated turns rsyslog's "message repeated 3 times: [ MSG]" into MSG.
func unwrapRepeated(msg []byte) []byte {
	rest, ok := cutWord(msg, "message")
	if !ok {
		return msg
	}
	if rest, ok = cutWord(rest, "repeated"); !ok {
		return msg
	}
	i := bytes.Index(rest, []byte(": ["))
	if i < 0 || rest[len(rest)-1] != ']' {
		return msg
	}
	inner := rest[i+3 : len(rest)-1]
	return inner[skipSpaces(inner, 0):]
}

// cutWord returns b after the word w and the spaces following it, when b
// starts with w followed by a space or the end.
func cutWord(b []byte, w string) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte(w)) || (len(b) > len(w) && b[len(w)] != ' ') {
		return b, false
	}
	return b[skipSpaces(b, len(w)):], true
}

func parseSSHDMessage(msg []byte, ev *schemas.AccessEvent) error {
	word, _ := token(msg, 0)
	rest := msg[skipSpaces(msg, len(word)):]
	preauth := bytes.HasSuffix(msg, []byte("[preauth]"))
	switch string(word) {
	case "Accepted", "Failed":
		method, end := token(rest, 0)
		after, ok := cutWord(rest[skipSpaces(rest, end):], "for")
		if !ok {
			// "Accepted key RSA SHA256:… found at …", "Failed to …".
			return ErrIgnored
		}
		ev.Action = schemas.ActionLogin
		ev.AuthMethod = authMethod(method)
		ev.Outcome = schemas.OutcomeFailure
		if word[0] == 'A' {
			ev.Outcome = schemas.OutcomeSuccess
		}
		return userFrom(after, ev)
	case "Invalid":
		after, ok := cutWord(rest, "user")
		if !ok {
			return ErrIgnored
		}
		ev.Action = schemas.ActionLogin
		ev.Outcome = schemas.OutcomeFailure
		return userFrom(after, ev)
	case "User":
		// "User USER from ADDR not allowed because …"
		if !bytes.Contains(rest, []byte(" not allowed because")) {
			return ErrIgnored
		}
		ev.Action = schemas.ActionLogin
		ev.Outcome = schemas.OutcomeDenied
		return userFrom(rest, ev)
	case "Access":
		// "Access denied for user USER by PAM account configuration"
		after, ok := cutWord(rest, "denied")
		if !ok {
			return ErrIgnored
		}
		if after, ok = cutWord(after, "for"); !ok {
			return ErrIgnored
		}
		if after, ok = cutWord(after, "user"); !ok {
			return ErrIgnored
		}
		i := bytes.Index(after, []byte(" by "))
		if i < 0 {
			return parseErr(FormatSSHD, ReasonNoMatch, "access denied message without \"by\"")
		}
		ev.Action = schemas.ActionLogin
		ev.Outcome = schemas.OutcomeDenied
		ev.User = string(bytes.TrimSpace(after[:i]))
		return nil
	case "error:":
		// "error: maximum authentication attempts exceeded for [invalid user] USER from ADDR port PORT ssh2 [preauth]"
		const exceeded = "maximum authentication attempts exceeded for "
		if after, ok := bytes.CutPrefix(rest, []byte(pamUnknownUser)); ok {
			return illegalUser(after, ev)
		}
		if !bytes.HasPrefix(rest, []byte(exceeded)) {
			return ErrIgnored
		}
		ev.Action = schemas.ActionLogin
		ev.Outcome = schemas.OutcomeFailure
		return userFrom(rest[len(exceeded):], ev)
	case "Connection":
		after, ok := cutWord(rest, "closed")
		if !ok {
			if after, ok = cutWord(rest, "reset"); !ok {
				return ErrIgnored // "Connection from …" (LogLevel VERBOSE)
			}
		}
		if after, ok = cutWord(after, "by"); !ok {
			return ErrIgnored
		}
		return disconnect(after, preauth, ev)
	case "Disconnected":
		after, ok := cutWord(rest, "from")
		if !ok {
			return ErrIgnored
		}
		return disconnect(after, preauth, ev)
	case "Disconnecting":
		// "Disconnecting authenticating user root 1.2.3.4 port 22: Too many authentication failures [preauth]"
		return disconnect(rest, preauth, ev)
	case "Received":
		after, ok := cutWord(rest, "disconnect")
		if !ok {
			return ErrIgnored // "Received signal 15; terminating."
		}
		if after, ok = cutWord(after, "from"); !ok {
			return ErrIgnored
		}
		return disconnect(after, preauth, ev)
	}
	if isPAMModule(word) {
		return pamSession(msg, ev)
	}
	if isSSHDNoise(word) {
		return ErrIgnored
	}
	return &ParseError{Format: FormatSSHD, Reason: ReasonNoMatch, Err: errSSHDUnknown}
}

// pamUnknownUser starts the message older sshd releases write when PAM
// does not know the user: "error: PAM: User not known to the underlying
// authentication module for illegal user USER from HOST".
const pamUnknownUser = "PAM: User not known to the underlying authentication module for illegal user "

// illegalUser parses "USER from HOST" of pamUnknownUser into a failed
// login. HOST is a name when sshd resolved it (UseDNS): the event then
// has no address.
func illegalUser(b []byte, ev *schemas.AccessEvent) error {
	i := bytes.LastIndex(b, []byte(" from "))
	if i < 0 {
		return parseErr(FormatSSHD, ReasonNoMatch, "PAM unknown-user message without \"from\"")
	}
	ev.Action = schemas.ActionLogin
	ev.Outcome = schemas.OutcomeFailure
	ev.User = string(bytes.TrimSpace(b[:i]))
	host, _ := token(b, skipSpaces(b, i+len(" from ")))
	if a, ok := parseAddr(host); ok {
		ev.SrcAddr = a
	}
	return nil
}

// isPAMModule reports whether word is "pam_MODULE(SERVICE:TYPE):", the
// prefix of PAM module messages (pam_unix, pam_succeed_if, pam_systemd…).
func isPAMModule(word []byte) bool {
	return bytes.HasPrefix(word, []byte("pam_")) && bytes.IndexByte(word, '(') > 4 && bytes.HasSuffix(word, []byte("):"))
}

// sshdNoise are first words of sshd messages that describe no access.
var sshdNoise = map[string]bool{
	"Server": true, "Starting": true, "Close": true, "Transferred:": true,
	"Did": true, "Unable": true, "banner": true, "Bad": true, "Timeout": true,
	"Timeout,": true, "reverse": true, "Address": true, "PAM": true,
	"Postponed": true, "Partial": true, "Authorized": true, "subsystem": true,
	"Set": true, "Exiting": true, "Read": true, "Nasty": true, "Protocol": true,
	"Changed": true, "fatal:": true, "warning:": true, "Disconnecting:": true,
	"Corrupted": true, "Too": true, "Unknown": true, "Could": true,
	"Attempt": true, "Deprecated": true, "Missing": true, "refused": true,
	"drop": true, "beginning": true, "exited": true, "Authentication": true,
	"Login": true, "Bind": true, "Creating": true, "Generating": true,
	"Unsafe": true, "Certificate": true, "Normal": true, "ROOT": true,
	"last": true, // syslogd's "last message repeated N times": the count is lost
}

// isSSHDNoise reports whether word starts a message sshd writes that is
// not an access event: the known words above, and "function_name:" or
// "debug1:" style prefixes of error and debug messages.
func isSSHDNoise(word []byte) bool {
	if sshdNoise[string(word)] {
		return true
	}
	if len(word) < 3 || word[len(word)-1] != ':' {
		return false
	}
	for _, c := range word[:len(word)-1] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// authMethod names an sshd method, without "/pam" and similar suffixes,
// as a constant string when it is a known one.
func authMethod(m []byte) string {
	if i := bytes.IndexByte(m, '/'); i >= 0 {
		m = m[:i]
	}
	switch string(m) {
	case "password":
		return "password"
	case "publickey":
		return "publickey"
	case "keyboard-interactive":
		return "keyboard-interactive"
	case "hostbased":
		return "hostbased"
	case "gssapi-with-mic":
		return "gssapi-with-mic"
	case "none":
		return "none"
	}
	return string(m)
}

// userFrom parses "[invalid user ]USER from ADDR[ port PORT]…" into ev.
// USER may be empty or contain spaces and even " from ": the first "from"
// followed by an address wins.
func userFrom(b []byte, ev *schemas.AccessEvent) error {
	if after, ok := cutWord(b, "invalid"); ok {
		if after, ok = cutWord(after, "user"); ok {
			b = after
		}
	}
	var badAddr []byte
	for pos := 0; pos < len(b); {
		var at int // index of "from"
		if pos == 0 && bytes.HasPrefix(b, []byte("from ")) {
			at = 0
		} else {
			i := bytes.Index(b[pos:], []byte(" from "))
			if i < 0 {
				break
			}
			at = pos + i + 1
		}
		pos = at + 4 // the space after "from" may start the next " from "
		a, end := token(b, skipSpaces(b, pos))
		addr, ok := parseAddr(a)
		if !ok {
			if badAddr == nil {
				badAddr = a
			}
			continue
		}
		ev.User = string(bytes.TrimSpace(b[:at]))
		ev.SrcAddr = addr
		if after, ok := cutWord(b[skipSpaces(b, end):], "port"); ok {
			p, _ := token(after, 0)
			ev.SrcPort, _ = parsePort(p)
		}
		return nil
	}
	if badAddr != nil {
		return parseErr(FormatSSHD, ReasonBadAddress, "bad address %q", badAddr)
	}
	return &ParseError{Format: FormatSSHD, Reason: ReasonNoMatch, Err: errSSHDNoFrom}
}

// disconnect parses the connection id sshd appends to disconnects:
// "[authenticating |invalid ]user USER ADDR port PORT…" or
// "ADDR[ port PORT]…" (older releases: "ADDR: 11: …").
func disconnect(b []byte, preauth bool, ev *schemas.AccessEvent) error {
	ev.Action = schemas.ActionDisconnect
	withUser := false
	if after, ok := cutWord(b, "authenticating"); ok {
		b, preauth = after, true
	} else if after, ok := cutWord(b, "invalid"); ok {
		b, preauth = after, true
	}
	if after, ok := cutWord(b, "user"); ok {
		b, withUser = after, true
	}
	if preauth {
		ev.Outcome = schemas.OutcomeUnknown
	} else {
		ev.Outcome = schemas.OutcomeSuccess
	}
	if !withUser {
		a, end := token(b, 0)
		if len(a) > 0 && a[len(a)-1] == ':' {
			a = a[:len(a)-1]
		}
		addr, ok := parseAddr(a)
		if !ok {
			if len(a) == 0 {
				return parseErr(FormatSSHD, ReasonNoMatch, "disconnect without address")
			}
			return parseErr(FormatSSHD, ReasonBadAddress, "bad address %q", a)
		}
		ev.SrcAddr = addr
		ev.SrcPort = portAfter(b[skipSpaces(b, end):])
		return nil
	}
	// USER ADDR port PORT: USER may contain spaces, so find the first
	// " port N" preceded by an address.
	var badAddr []byte
	for pos := 0; pos < len(b); {
		i := bytes.Index(b[pos:], []byte(" port "))
		if i < 0 {
			break
		}
		at := pos + i
		pos = at + 6
		start := bytes.LastIndexByte(b[:at], ' ') + 1
		addr, ok := parseAddr(b[start:at])
		if !ok {
			if badAddr == nil {
				badAddr = b[start:at]
			}
			continue
		}
		ev.User = string(bytes.TrimSpace(b[:start]))
		ev.SrcAddr = addr
		ev.SrcPort = portAfter(b[at+1:])
		return nil
	}
	if badAddr != nil {
		return parseErr(FormatSSHD, ReasonBadAddress, "bad address %q", badAddr)
	}
	return parseErr(FormatSSHD, ReasonNoMatch, "disconnect without \"ADDR port PORT\"")
}

// portAfter parses "port N" (N ending at a non-digit, as in "port 22:11:").
func portAfter(b []byte) uint16 {
	after, ok := cutWord(b, "port")
	if !ok {
		return 0
	}
	n := 0
	for n < len(after) && after[n] >= '0' && after[n] <= '9' {
		n++
	}
	p, _ := parsePort(after[:n])
	return p
}

// pamSession parses PAM session messages (pam_unix writes them):
// "pam_unix(sshd:session): session opened for user USER(uid=1000) by (uid=0)"
// and "… session closed for user USER". Other PAM messages ("sshd:auth"
// failures duplicate "Failed password", pam_succeed_if requirements…)
// are ignored.
func pamSession(msg []byte, ev *schemas.AccessEvent) error {
	i := bytes.Index(msg, []byte(":session): session "))
	if i < 0 {
		return ErrIgnored
	}
	rest := msg[i+len(":session): session "):]
	if after, ok := cutWord(rest, "opened"); ok {
		ev.Action, rest = schemas.ActionSessionOpen, after
	} else if after, ok := cutWord(rest, "closed"); ok {
		ev.Action, rest = schemas.ActionSessionClose, after
	} else {
		return ErrIgnored
	}
	rest, ok := cutWord(rest, "for")
	if ok {
		rest, ok = cutWord(rest, "user")
	}
	if !ok {
		return ErrIgnored
	}
	end := bytes.IndexAny(rest, "( ")
	if end < 0 {
		end = len(rest)
	}
	if end == 0 {
		return parseErr(FormatSSHD, ReasonMissingField, "pam session message without user")
	}
	ev.User = string(rest[:end])
	ev.Outcome = schemas.OutcomeSuccess
	return nil
}
