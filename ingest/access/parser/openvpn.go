package parser

import (
	"bytes"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// openvpnParser parses OpenVPN server log lines: syslog MSG parts (tag
// openvpn, ovpn-*), or lines of the server's own --log file with their
// "2006-01-02 15:04:05" (or ctime) time first. Client lines start with the
// client instance "CN/REAL:PORT" (or "REAL:PORT" before the common name is
// known). Recognised messages:
//
//   - "MULTI_sva: pool returned IPv4=V4, IPv6=V6", "MULTI: primary virtual
//     IP for CN/REAL: V" and "MULTI: Learn: V -> CN/REAL" bind the virtual
//     address V to user CN (Binding start, SessionID "CN/REAL",
//     OuterAddr REAL); MAC and subnet Learns are ignored;
//   - "... client-instance exiting" / "client-instance restarting" end the
//     session (Binding stop, SessionID "CN/REAL", no SrcAddr: the
//     enricher ends the bindings that session started);
//   - "TLS: Username/Password authentication succeeded|failed for username
//     'U'" and "AUTH_FAILED" are logins from the real address.
//
// With several virtual addresses (IPv4 and IPv6) one line gives one event:
// MULTI_sva yields the IPv4 address, the Learn lines the others.
type openvpnParser struct{}

func isOpenVPNTag(app []byte) bool {
	a := strings.ToLower(string(app))
	return a == "openvpn" || strings.HasPrefix(a, "ovpn-") || strings.HasPrefix(a, "openvpn-")
}

// ctime parses "Wed Dec  2 01:00:00 2026" at the start of b.
func ctime(b []byte, loc *time.Location) (time.Time, int, bool) {
	if len(b) < 24 || b[3] != ' ' {
		return time.Time{}, 0, false
	}
	s := string(b[4:24])
	t, err := time.ParseInLocation("Jan _2 15:04:05 2006", s, loc)
	if err != nil {
		return time.Time{}, 0, false
	}
	return t, 24, true
}

func (openvpnParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(FormatOpenVPN)
	}
	reset(ev, string(FormatOpenVPN), &meta)
	msg, t, host := stripFilePrefix(line, &meta, isOpenVPNTag)
	if t.IsZero() {
		if ct, n, ok := ctime(msg, meta.location()); ok {
			t, msg = ct, msg[skipSpaces(msg, n):]
		}
	}
	if !t.IsZero() {
		ev.Time = unixNano(t)
	}
	if len(host) > 0 {
		ev.Host = string(host)
	}
	// The client instance: "CN/REAL:PORT" or "REAL:PORT".
	inst, end := token(msg, 0)
	cn, real, hasCN := bytes.Cut(inst, []byte("/"))
	if !hasCN {
		real, cn = inst, nil
	}
	ra, rp, ok := addrPort(string(real))
	if !ok {
		return ErrIgnored // server-wide messages (startup, routes…)
	}
	ev.OuterAddr = ra
	if hasCN && len(cn) > 0 && string(cn) != "UNDEF" {
		ev.User = string(cn)
		ev.SessionID = string(inst)
	}
	rest := string(msg[skipSpaces(msg, end):])
	ev.AuthMethod = "openvpn"
	switch {
	case strings.HasPrefix(rest, "MULTI_sva: pool returned IPv4="):
		v4, _, _ := strings.Cut(strings.TrimPrefix(rest, "MULTI_sva: pool returned IPv4="), ",")
		return openvpnBind(ev, v4)
	case strings.HasPrefix(rest, "MULTI: primary virtual IP for "):
		i := strings.LastIndex(rest, ": ")
		return openvpnBind(ev, rest[i+2:])
	case strings.HasPrefix(rest, "MULTI: Learn: "):
		v, target, ok := strings.Cut(strings.TrimPrefix(rest, "MULTI: Learn: "), " -> ")
		if !ok {
			return parseErr(FormatOpenVPN, ReasonNoMatch, "Learn without \" -> \"")
		}
		if c, _, ok := strings.Cut(target, "/"); ok && ev.User == "" {
			ev.User, ev.SessionID = c, target
		}
		if strings.IndexByte(v, '/') >= 0 || strings.Count(v, ":") == 5 && !strings.Contains(v, "::") && len(v) == 17 {
			return ErrIgnored // an iroute subnet or a MAC (tap)
		}
		return openvpnBind(ev, v)
	case strings.Contains(rest, "client-instance exiting"), strings.Contains(rest, "client-instance restarting"):
		if ev.SessionID == "" {
			return ErrIgnored // before authentication: no session bound yet
		}
		ev.Action = schemas.ActionDisconnect
		ev.Binding = schemas.BindingStop
		ev.Outcome = schemas.OutcomeSuccess
		return nil
	case strings.HasPrefix(rest, "TLS: Username/Password authentication "):
		r := strings.TrimPrefix(rest, "TLS: Username/Password authentication ")
		i := strings.Index(r, "for username '")
		if i < 0 {
			return parseErr(FormatOpenVPN, ReasonMissingField, "no username in %q", rest)
		}
		u := r[i+len("for username '"):]
		u, _, _ = strings.Cut(u, "'")
		ev.User, ev.SessionID = u, ""
		ev.SrcAddr, ev.SrcPort = ra, rp
		ev.Action = schemas.ActionLogin
		ev.AuthMethod = "password"
		if strings.HasPrefix(r, "succeeded") {
			ev.Outcome = schemas.OutcomeSuccess
		} else {
			ev.Outcome = schemas.OutcomeFailure
		}
		return nil
	case strings.HasPrefix(rest, "TLS Auth Error:"), strings.Contains(rest, "AUTH_FAILED"):
		ev.SrcAddr, ev.SrcPort = ra, rp
		ev.Action = schemas.ActionLogin
		ev.Outcome = schemas.OutcomeFailure
		return nil
	}
	return ErrIgnored
}

// openvpnBind completes a session-start event for virtual address v.
func openvpnBind(ev *schemas.AccessEvent, v string) error {
	v = strings.TrimSpace(v)
	a, ok := parseAddr(v)
	if !ok {
		if v == "(Not enabled)" || v == "" {
			return ErrIgnored
		}
		return parseErr(FormatOpenVPN, ReasonBadAddress, "bad virtual address %q", v)
	}
	if ev.User == "" {
		return ErrIgnored // no common name: nobody to bind
	}
	ev.SrcAddr = a
	ev.Action = schemas.ActionSessionOpen
	ev.Binding = schemas.BindingStart
	ev.Outcome = schemas.OutcomeSuccess
	return nil
}
