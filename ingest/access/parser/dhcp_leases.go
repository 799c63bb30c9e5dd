package parser

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// parseDHCPLeases parses a DHCP lease database, told apart by content:
//
//   - dnsmasq (dhcp-leasefile): "EXPIRY MAC ADDR HOSTNAME CLIENTID" per
//     line, EXPIRY Unix seconds (0: infinite), HOSTNAME "*" when none; after
//     a "duid SERVER-DUID" line the DHCPv6 leases "EXPIRY IAID ADDR
//     HOSTNAME CLIENT-DUID" (the client DUID is the device);
//   - ISC dhcpd.leases: "lease ADDR { starts …; ends …; binding state
//     active; hardware ethernet MAC; client-hostname "NAME"; }" blocks, the
//     last block of an address winning; only "binding state active" binds;
//   - Kea memfile CSV (see dhcpParser): the last line of an address wins.
//
// Every binding is an event of source dhcp with Device, DeviceName and
// Expires (the lease's end); its Time is the lease's start when the file
// says (ISC starts, Kea expire − lifetime), else meta.Received.
func parseDHCPLeases(data []byte, meta *Meta) ([]schemas.AccessEvent, error) {
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return nil, nil
	case bytes.HasPrefix(trimmed, []byte("address,")):
		return keaLeases(data, meta)
	case bytes.Contains(data, []byte("lease ")) && bytes.Contains(data, []byte("{")):
		return iscLeases(data, meta)
	}
	return dnsmasqLeases(data, meta)
}

func dnsmasqLeases(data []byte, meta *Meta) ([]schemas.AccessEvent, error) {
	var out []schemas.AccessEvent
	for n, raw := range bytes.Split(data, []byte("\n")) {
		f := strings.Fields(string(raw))
		if len(f) == 0 {
			continue
		}
		if f[0] == "duid" {
			continue
		}
		if len(f) < 4 {
			return nil, parseErr(FormatDHCPLeases, ReasonMissingField, "line %d: %d fields, want EXPIRY MAC ADDR HOSTNAME [CLIENTID]", n+1, len(f))
		}
		exp, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || exp < 0 {
			return nil, parseErr(FormatDHCPLeases, ReasonBadTime, "line %d: bad expiry %q", n+1, f[0])
		}
		a, ok := parseAddr(f[2])
		if !ok {
			return nil, parseErr(FormatDHCPLeases, ReasonBadAddress, "line %d: bad address %q", n+1, f[2])
		}
		ev := snapshotEvent(string(FormatDHCP), meta)
		ev.SrcAddr, ev.AuthMethod = a, "dhcp"
		ev.Device = normalizeMAC(f[1])
		if !a.Is4() && len(f) > 4 {
			ev.Device = f[4] // DHCPv6: the IAID is in f[1], the client's DUID last
		}
		if f[3] != "*" {
			ev.DeviceName = f[3]
		}
		ev.Expires = unixSeconds(exp)
		ev.SessionID = ev.Device
		out = append(out, ev)
	}
	return out, nil
}

func keaLeases(data []byte, meta *Meta) ([]schemas.AccessEvent, error) {
	last := map[schemas.Addr]int{}
	var out []schemas.AccessEvent
	for n, raw := range bytes.Split(data, []byte("\n")) {
		l := strings.TrimSpace(string(raw))
		if l == "" || strings.HasPrefix(l, "address,") {
			continue
		}
		var ev schemas.AccessEvent
		reset(&ev, string(FormatDHCP), meta)
		if err := keaLine(l, &ev); err != nil {
			if pe, ok := err.(*ParseError); ok {
				pe.Format = FormatDHCPLeases
				pe.Err = fmt.Errorf("line %d: %v", n+1, pe.Err)
			}
			return nil, err
		}
		ev.SessionID = ev.Device
		if i, ok := last[ev.SrcAddr]; ok {
			out[i] = ev
		} else {
			last[ev.SrcAddr] = len(out)
			out = append(out, ev)
		}
	}
	kept := out[:0]
	for _, ev := range out {
		if ev.Binding == schemas.BindingStart {
			kept = append(kept, ev)
		}
	}
	return kept, nil
}

func iscLeases(data []byte, meta *Meta) ([]schemas.AccessEvent, error) {
	last := map[schemas.Addr]int{}
	var out []schemas.AccessEvent
	active := []bool{}
	s := string(data)
	line := 1
	for {
		i := strings.Index(s, "lease ")
		if i < 0 {
			break
		}
		// Only a "lease" at the start of a line opens a block.
		if i > 0 && s[i-1] != '\n' {
			line += strings.Count(s[:i+6], "\n")
			s = s[i+6:]
			continue
		}
		line += strings.Count(s[:i], "\n")
		open := strings.IndexByte(s[i:], '{')
		closeAt := strings.Index(s[i:], "\n}")
		if open < 0 || closeAt < 0 || open > closeAt {
			return nil, parseErr(FormatDHCPLeases, ReasonNoMatch, "line %d: unterminated lease block", line)
		}
		addr := strings.TrimSpace(s[i+6 : i+open])
		body := s[i+open+1 : i+closeAt]
		a, ok := parseAddr(addr)
		if !ok {
			return nil, parseErr(FormatDHCPLeases, ReasonBadAddress, "line %d: bad lease address %q", line, addr)
		}
		ev := snapshotEvent(string(FormatDHCP), meta)
		ev.SrcAddr, ev.AuthMethod = a, "dhcp"
		isActive := false
		for _, st := range strings.Split(body, ";") {
			st = strings.TrimSpace(st)
			switch {
			case strings.HasPrefix(st, "starts "), strings.HasPrefix(st, "ends "):
				t, ok := iscTime(st[strings.IndexByte(st, ' ')+1:], meta)
				if !ok {
					return nil, parseErr(FormatDHCPLeases, ReasonBadTime, "line %d: bad %q", line, st)
				}
				if st[0] == 's' {
					ev.Time = unixNano(t)
				} else {
					ev.Expires = unixNano(t)
				}
			case strings.HasPrefix(st, "binding state "):
				isActive = strings.TrimPrefix(st, "binding state ") == "active"
			case strings.HasPrefix(st, "hardware ethernet "):
				ev.Device = normalizeMAC(strings.TrimPrefix(st, "hardware ethernet "))
			case strings.HasPrefix(st, "client-hostname "):
				ev.DeviceName = strings.Trim(strings.TrimPrefix(st, "client-hostname "), `"`)
			}
		}
		ev.SessionID = ev.Device
		if j, ok := last[a]; ok {
			out[j], active[j] = ev, isActive
		} else {
			last[a] = len(out)
			out = append(out, ev)
			active = append(active, isActive)
		}
		line += strings.Count(s[i:i+closeAt+2], "\n")
		s = s[i+closeAt+2:]
	}
	kept := out[:0]
	for j, ev := range out {
		if active[j] {
			kept = append(kept, ev)
		}
	}
	return kept, nil
}

// iscTime parses dhcpd's "W YYYY/MM/DD HH:MM:SS" (UTC), "epoch N" and
// "never".
func iscTime(s string, meta *Meta) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if c := strings.IndexByte(s, '#'); c >= 0 {
		s = strings.TrimSpace(s[:c])
	}
	if s == "never" {
		return time.Time{}, true
	}
	if rest, ok := strings.CutPrefix(s, "epoch "); ok {
		sec, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || unixSeconds(sec) == 0 {
			return time.Time{}, false
		}
		return time.Unix(sec, 0).UTC(), true
	}
	if len(s) < 2 || s[1] != ' ' {
		return time.Time{}, false
	}
	t, err := time.Parse("2006/01/02 15:04:05", s[2:])
	return t, err == nil
}
