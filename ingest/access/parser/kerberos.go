package parser

import (
	"bytes"
	"strings"

	"github.com/flowaudit/flowaudit/schemas"
)

// kerberosParser parses MIT krb5kdc log lines: the syslog MSG (tag
// krb5kdc), or lines of the KDC's own log file ("Dec 02 01:00:00 kdc
// krb5kdc[812](info): …"):
//
//	AS_REQ (4 etypes {aes256-cts-hmac-sha1-96(18), …}) 10.0.0.5: ISSUE: authtime 1764637200, etypes {rep=…, tkt=…, ses=…}, alice@EXAMPLE.COM for krbtgt/EXAMPLE.COM@EXAMPLE.COM
//	TGS_REQ (…) 2001:db8::5: ISSUE: authtime …, etypes {…}, alice@EXAMPLE.COM for host/db.example.com@EXAMPLE.COM
//	AS_REQ (…) 10.0.0.5: CLIENT_NOT_FOUND: bob@EXAMPLE.COM for krbtgt/EXAMPLE.COM@EXAMPLE.COM, Client not found in Kerberos database
//
// Mapping: the client principal → User (realm kept), the client address →
// SrcAddr ("<unknown client address>" leaves it empty), the server
// principal → Resource, AS_REQ → Action login, TGS_REQ → Action tgs_req,
// ISSUE → success (a login binding for enrich.identity_ttl), any other
// status (CLIENT_NOT_FOUND, PREAUTH_FAILED…) → failure. NEEDED_PREAUTH, the KDC asking the
// client to pre-authenticate (the normal first round of kinit), is
// ignored. Other KDC messages are ignored.
type kerberosParser struct{}

func isKDCTag(app []byte) bool { return string(app) == "krb5kdc" }

func (kerberosParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(FormatKerberos)
	}
	reset(ev, string(FormatKerberos), &meta)
	msg, t, host := stripFilePrefix(line, &meta, isKDCTag)
	if !t.IsZero() {
		ev.Time = unixNano(t)
	}
	if len(host) > 0 {
		ev.Host = string(host)
	}
	kind, end := token(msg, 0)
	switch string(kind) {
	case "AS_REQ":
		ev.Action = schemas.ActionLogin
	case "TGS_REQ":
		ev.Action = "tgs_req"
	default:
		return ErrIgnored // startup, "closing down fd", …
	}
	rest := msg[skipSpaces(msg, end):]
	// The etype list in balanced parentheses.
	if len(rest) > 0 && rest[0] == '(' {
		depth, i := 0, 0
		for ; i < len(rest); i++ {
			if rest[i] == '(' {
				depth++
			} else if rest[i] == ')' {
				depth--
				if depth == 0 {
					break
				}
			}
		}
		if i == len(rest) {
			return parseErr(FormatKerberos, ReasonNoMatch, "unbalanced etype list")
		}
		rest = rest[skipSpaces(rest, i+1):]
	}
	c := bytes.Index(rest, []byte(": "))
	if c < 0 {
		return parseErr(FormatKerberos, ReasonNoMatch, "no \"ADDR: STATUS:\"")
	}
	addr := string(rest[:c])
	if !strings.HasPrefix(addr, "<") {
		a, ok := parseAddr(addr)
		if !ok {
			return parseErr(FormatKerberos, ReasonBadAddress, "bad client address %q", addr)
		}
		ev.SrcAddr = a
	}
	rest = rest[c+2:]
	c = bytes.Index(rest, []byte(": "))
	if c < 0 {
		return parseErr(FormatKerberos, ReasonNoMatch, "no status")
	}
	status := string(rest[:c])
	rest = rest[c+2:]
	f := bytes.Index(rest, []byte(" for "))
	if f < 0 {
		return parseErr(FormatKerberos, ReasonMissingField, "no \"CLIENT for SERVER\"")
	}
	client := rest[:f]
	if sp := bytes.LastIndexAny(client, " ,"); sp >= 0 {
		client = client[sp+1:]
	}
	server, _ := token(rest, f+5)
	server = bytes.TrimRight(server, ",")
	if len(client) == 0 {
		return parseErr(FormatKerberos, ReasonBadUser, "empty client principal")
	}
	ev.User = string(client)
	ev.Resource = string(server)
	ev.AuthMethod = "kerberos"
	switch status {
	case "ISSUE":
		ev.Outcome = schemas.OutcomeSuccess
	case "NEEDED_PREAUTH":
		return ErrIgnored
	default:
		ev.Outcome = schemas.OutcomeFailure
	}
	return nil
}
