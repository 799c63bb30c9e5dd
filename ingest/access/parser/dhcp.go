package parser

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/flowaudit/flowaudit/schemas"
)

// dhcpParser parses DHCP server lines into device bindings (Device the
// MAC address or DUID, DeviceName the client's host name; no User):
//
//   - dnsmasq log lines (syslog tag dnsmasq-dhcp, or its log-facility
//     file): "DHCPACK(eth0) 10.0.0.5 02:00:5e:10:00:01 laptop-7" and the
//     DHCPv6 "DHCPREPLY(eth0) 2001:db8::5 00:01:00:01:… laptop-7" start
//     (renew) a binding, "DHCPRELEASE(…) ADDR MAC" ends it. DHCPv6 lines
//     name the client's DUID, which is also the binding's SessionID: the
//     DHCPv6 "DHCPRELEASE(eth0) DUID" (dnsmasq logs no address for it)
//     ends what that DUID was given; a "DHCPREPLY … DUID address invalid"
//     (a renewal refused: the client must stop using the address) ends
//     that address's binding, "… DUID deprecated" keeps it (no host name).
//     The other messages (DISCOVER, OFFER, REQUEST, SOLICIT, DECLINE, …)
//     are ignored. A leading
//     log-dhcp transaction number is skipped. dnsmasq does not log the
//     lease time: the binding lasts enrich.identity_ttl unless released
//     (tail the leases file as dhcp_leases for exact expiry);
//   - Kea memfile CSV lines (kea-leases4.csv: address, hwaddr, client_id,
//     valid_lifetime, expire, subnet_id, fqdn_fwd, fqdn_rev, hostname,
//     state…; kea-leases6.csv: address, duid, valid_lifetime, expire, …,
//     hostname (12th), hwaddr (13th), state (14th)): a lease with state 0
//     and a lifetime starts a binding at expire − valid_lifetime that
//     Expires at expire; lifetime 0 (released) or state 1/2 (declined,
//     expired-reclaimed) ends it. The header line is ignored.
type dhcpParser struct{}

func isDnsmasqTag(app []byte) bool {
	a := string(app)
	return a == "dnsmasq-dhcp" || a == "dnsmasq"
}

func (dhcpParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(FormatDHCP)
	}
	reset(ev, string(FormatDHCP), &meta)
	trimmed := bytes.TrimSpace(line)
	if bytes.Count(trimmed, []byte(",")) >= 8 && !bytes.Contains(trimmed, []byte("DHCP")) {
		return keaLine(string(trimmed), ev)
	}
	msg, t, host := stripFilePrefix(trimmed, &meta, isDnsmasqTag)
	if !t.IsZero() {
		ev.Time = unixNano(t)
	}
	if len(host) > 0 {
		ev.Host = string(host)
	}
	kind, end := token(msg, 0)
	if _, err := strconv.ParseUint(string(kind), 10, 64); err == nil && len(kind) > 0 {
		msg = msg[skipSpaces(msg, end):] // log-dhcp transaction id
		kind, end = token(msg, 0)
	}
	name, _, _ := bytes.Cut(kind, []byte("("))
	var binding schemas.Binding
	switch string(name) {
	case "DHCPACK", "DHCPREPLY":
		binding = schemas.BindingStart
	case "DHCPRELEASE":
		binding = schemas.BindingStop
	default:
		if bytes.HasPrefix(name, []byte("DHCP")) || len(msg) < len(trimmed) {
			return ErrIgnored // other DHCP messages; dnsmasq's own ("started, version …")
		}
		return parseErr(FormatDHCP, ReasonNoMatch, "not a dnsmasq DHCP message or Kea lease line")
	}
	f := strings.Fields(string(msg[end:]))
	if len(f) == 1 && binding == schemas.BindingStop {
		if _, isAddr := parseAddr(f[0]); !isAddr {
			// DHCPv6: dnsmasq logs a release with the client's DUID only.
			ev.Device = normalizeMAC(f[0])
			ev.SessionID = ev.Device
			ev.Binding, ev.Action = schemas.BindingStop, schemas.ActionSessionClose
			ev.Outcome = schemas.OutcomeSuccess
			ev.AuthMethod = "dhcp"
			return nil
		}
	}
	if len(f) < 2 {
		if len(f) == 1 && binding == schemas.BindingStart {
			return ErrIgnored // DHCPACK to a DHCPINFORM: no lease
		}
		return parseErr(FormatDHCP, ReasonMissingField, "%s without ADDR and MAC", name)
	}
	a, ok := parseAddr(f[0])
	if !ok {
		return parseErr(FormatDHCP, ReasonBadAddress, "bad lease address %q", f[0])
	}
	ev.SrcAddr = a
	ev.Device = normalizeMAC(f[1])
	if len(f) > 2 && f[2] != "*" {
		ev.DeviceName = f[2]
	}
	if !a.Is4() {
		ev.SessionID = ev.Device // a DHCPv6 release names only the DUID
		switch strings.Join(f[2:], " ") {
		case "address invalid":
			// This address only, not the others of the DUID.
			binding, ev.DeviceName, ev.SessionID = schemas.BindingStop, "", ""
		case "deprecated":
			ev.DeviceName = ""
		}
	}
	ev.Binding = binding
	ev.Outcome = schemas.OutcomeSuccess
	ev.AuthMethod = "dhcp"
	if binding == schemas.BindingStop {
		ev.Action = schemas.ActionSessionClose
	} else {
		ev.Action = schemas.ActionSessionOpen
	}
	return nil
}

// keaLine parses one Kea memfile CSV lease line.
func keaLine(l string, ev *schemas.AccessEvent) error {
	f := strings.Split(l, ",")
	if f[0] == "address" {
		return ErrIgnored // the header
	}
	a, ok := parseAddr(f[0])
	if !ok {
		return parseErr(FormatDHCP, ReasonBadAddress, "bad Kea lease address %q", f[0])
	}
	var lifetime, expire, state, host, dev string
	if a.Is4() {
		if len(f) < 10 {
			return parseErr(FormatDHCP, ReasonMissingField, "Kea v4 lease line with %d fields, want 10", len(f))
		}
		dev, lifetime, expire, host, state = f[1], f[3], f[4], f[8], f[9]
	} else {
		if len(f) < 14 {
			return parseErr(FormatDHCP, ReasonMissingField, "Kea v6 lease line with %d fields, want 14", len(f))
		}
		dev, lifetime, expire, host, state = f[1], f[2], f[3], f[11], f[13]
		if f[12] != "" {
			dev = f[12]
		}
	}
	lt, err1 := strconv.ParseInt(lifetime, 10, 64)
	ex, err2 := strconv.ParseInt(expire, 10, 64)
	if err1 != nil || err2 != nil || lt < 0 || unixSeconds(ex) == 0 {
		return parseErr(FormatDHCP, ReasonBadTime, "bad valid_lifetime %q or expire %q", lifetime, expire)
	}
	ev.SrcAddr = a
	ev.Device = normalizeMAC(dev)
	ev.DeviceName = strings.ReplaceAll(host, "&#x2c", ",")
	ev.Outcome = schemas.OutcomeSuccess
	ev.AuthMethod = "dhcp"
	if lt == 0 || (state != "0" && state != "") {
		ev.Binding, ev.Action = schemas.BindingStop, schemas.ActionSessionClose
		ev.Time = unixSeconds(ex)
		return nil
	}
	ev.Binding, ev.Action = schemas.BindingStart, schemas.ActionSessionOpen
	ev.Time = unixSeconds(ex - lt)
	ev.Expires = unixSeconds(ex)
	return nil
}
