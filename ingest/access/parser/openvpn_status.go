package parser

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// parseOpenVPNStatus parses an OpenVPN --status file.
//
// Version 1 (the default): a "CLIENT LIST" section (Common Name, Real
// Address, Bytes Received, Bytes Sent, Connected Since) and a "ROUTING
// TABLE" section (Virtual Address, Common Name, Real Address, Last Ref);
// a client's bindings are its routing-table rows with an IP address.
// Versions 2 (commas) and 3 (tabs): HEADER rows name the columns of the
// CLIENT_LIST rows, whose "Virtual Address" and "Virtual IPv6 Address"
// are the bindings, "Username" the user (else "Common Name") and
// "Connected Since (time_t)" the start.
//
// Each binding is an event of source openvpn: User, SrcAddr the virtual
// address, OuterAddr the real address, SessionID "CN/REAL" (the client
// instance as the log lines name it), Time the connection's start.
func parseOpenVPNStatus(data []byte, meta *Meta) ([]schemas.AccessEvent, error) {
	var out []schemas.AccessEvent
	lines := bytes.Split(data, []byte("\n"))
	sep := ","
	for _, l := range lines {
		if bytes.HasPrefix(l, []byte("TITLE\t")) || bytes.HasPrefix(l, []byte("HEADER\t")) {
			sep = "\t"
			break
		}
	}
	type client struct {
		user, real string
		since      time.Time
	}
	v1Clients := map[string]client{} // v1: CN/REAL → client
	var clientCols, routeCols map[string]int
	section := ""
	for n, raw := range lines {
		l := strings.TrimRight(string(raw), "\r")
		if l == "" {
			continue
		}
		f := strings.Split(l, sep)
		bad := func(format string, args ...any) error {
			return parseErr(FormatOpenVPNStatus, ReasonNoMatch, "line %d: "+format, append([]any{n + 1}, args...)...)
		}
		switch f[0] {
		case "OpenVPN CLIENT LIST":
			section = "v1clients"
			continue
		case "ROUTING TABLE":
			section = "v1routes"
			continue
		case "GLOBAL STATS":
			section = "stats"
			continue
		case "END":
			section = ""
			continue
		case "Updated", "TITLE", "TIME", "GLOBAL_STATS":
			continue
		case "HEADER":
			if len(f) < 2 {
				return nil, bad("HEADER without a section name")
			}
			cols := map[string]int{}
			for i, name := range f[2:] {
				cols[name] = i + 1
			}
			if len(f) > 1 && f[1] == "CLIENT_LIST" {
				clientCols = cols
			} else if len(f) > 1 && f[1] == "ROUTING_TABLE" {
				routeCols = cols
			}
			continue
		case "CLIENT_LIST":
			if clientCols == nil {
				return nil, bad("CLIENT_LIST before its HEADER")
			}
			get := func(name string) string {
				if i, ok := clientCols[name]; ok && i < len(f) {
					return f[i]
				}
				return ""
			}
			cn, real := get("Common Name"), get("Real Address")
			user := get("Username")
			if user == "" || user == "UNDEF" {
				user = cn
			}
			if user == "" || user == "UNDEF" {
				continue
			}
			ra, _, ok := addrPort(real)
			if !ok {
				return nil, bad("bad Real Address %q", real)
			}
			since := meta.Received
			if s := get("Connected Since (time_t)"); s != "" {
				sec, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return nil, bad("bad Connected Since (time_t) %q", s)
				}
				since = time.Unix(sec, 0)
			}
			for _, col := range []string{"Virtual Address", "Virtual IPv6 Address"} {
				v := get(col)
				if v == "" {
					continue
				}
				a, ok := parseAddr(v)
				if !ok {
					return nil, bad("bad %s %q", col, v)
				}
				ev := snapshotEvent(string(FormatOpenVPN), meta)
				ev.Time, ev.User, ev.SrcAddr, ev.OuterAddr = unixNano(since), user, a, ra
				ev.SessionID, ev.AuthMethod = cn+"/"+real, "openvpn"
				out = append(out, ev)
			}
			continue
		case "ROUTING_TABLE":
			_ = routeCols // v2/v3 bindings come from CLIENT_LIST
			continue
		}
		switch section {
		case "v1clients":
			if f[0] == "Common Name" {
				continue
			}
			if len(f) < 5 {
				return nil, bad("CLIENT LIST row with %d fields, want 5", len(f))
			}
			since, err := time.ParseInLocation("2006-01-02 15:04:05", f[4], meta.location())
			if err != nil {
				since, err = time.ParseInLocation("Mon Jan _2 15:04:05 2006", f[4], meta.location())
			}
			if err != nil {
				return nil, bad("bad Connected Since %q", f[4])
			}
			v1Clients[f[0]+"/"+f[1]] = client{user: f[0], real: f[1], since: since}
		case "v1routes":
			if f[0] == "Virtual Address" {
				continue
			}
			if len(f) < 3 {
				return nil, bad("ROUTING TABLE row with %d fields, want 4", len(f))
			}
			a, ok := parseAddr(f[0])
			if !ok {
				continue // a MAC (tap) or an iroute subnet
			}
			c, ok := v1Clients[f[1]+"/"+f[2]]
			if !ok || c.user == "UNDEF" {
				continue
			}
			ra, _, ok := addrPort(c.real)
			if !ok {
				return nil, bad("bad Real Address %q", c.real)
			}
			ev := snapshotEvent(string(FormatOpenVPN), meta)
			ev.Time, ev.User, ev.SrcAddr, ev.OuterAddr = unixNano(c.since), c.user, a, ra
			ev.SessionID, ev.AuthMethod = f[1]+"/"+f[2], "openvpn"
			out = append(out, ev)
		case "stats":
		default:
			return nil, bad("not an OpenVPN status line")
		}
	}
	return out, nil
}
