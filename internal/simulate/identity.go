package simulate

import (
	"encoding/json"
	"fmt"
	"time"
)

// identityHosts is how many web hosts each identity format binds: format
// k binds 10.1.0.(10+10k) to 10.1.0.(19+10k), among the flow generator's
// busiest web hosts, so the demo's flows show attribution by every source.
const identityHosts = 10

var identityBase = map[AccessFormat]int{AccessOpenVPN: 0, AccessRADIUS: 1, AccessKerberos: 2, AccessWindows: 3, AccessDHCP: 4}

// identity emits one session of an identity source: a start binding the
// next of the format's hosts and, for every fifth session, its stop.
func (g *AccessGenerator) identity(now time.Time) []AccessLine {
	i := g.bound
	g.bound++
	host := fmt.Sprintf("10.1.0.%d", 10+10*identityBase[g.format]+i%identityHosts)
	user := simUsers[i%5] // people, not the service accounts
	mac := fmt.Sprintf("02:00:5e:%02x:00:%02x", identityBase[g.format], i%identityHosts)
	real := fmt.Sprintf("198.51.100.%d", 100+i%100)
	port := 40000 + i%20000
	stop := i%5 == 4
	var out []AccessLine
	switch g.format {
	case AccessOpenVPN:
		inst := fmt.Sprintf("%s/%s:%d", user, real, port)
		out = append(out, AccessLine{Line: fmt.Sprintf("%s MULTI_sva: pool returned IPv4=%s, IPv6=(Not enabled)", inst, host), User: user, SrcAddr: host, Action: "session_open", Outcome: "success", Time: now})
		if stop {
			out = append(out, AccessLine{Line: inst + " SIGTERM[soft,remote-exit] received, client-instance exiting", User: user, Action: "disconnect", Outcome: "success", Time: now})
		}
	case AccessRADIUS:
		pairs := fmt.Sprintf(`User-Name = "%s", Framed-IP-Address = %s, Calling-Station-Id = "%s", Acct-Session-Id = "sim-%06d", NAS-IP-Address = 192.0.2.1, Event-Timestamp = %d`, user, host, mac, i, now.Unix())
		out = append(out, AccessLine{Line: "Acct-Status-Type = Start, " + pairs, User: user, SrcAddr: host, Action: "session_open", Outcome: "success", Time: now.Truncate(time.Second)})
		if stop {
			out = append(out, AccessLine{Line: "Acct-Status-Type = Stop, " + pairs, User: user, SrcAddr: host, Action: "session_close", Outcome: "success", Time: now.Truncate(time.Second)})
		}
	case AccessKerberos:
		principal := user + "@EXAMPLE.COM"
		line := fmt.Sprintf("AS_REQ (4 etypes {aes256-cts-hmac-sha1-96(18), aes128-cts-hmac-sha1-96(17), aes256-cts-hmac-sha384-192(20), aes128-cts-hmac-sha256-128(19)}) %s: ISSUE: authtime %d, etypes {rep=aes256-cts-hmac-sha1-96(18), tkt=aes256-cts-hmac-sha1-96(18), ses=aes256-cts-hmac-sha1-96(18)}, %s for krbtgt/EXAMPLE.COM@EXAMPLE.COM", host, now.Unix(), principal)
		out = append(out, AccessLine{Line: line, User: principal, SrcAddr: host, Action: "login", Outcome: "success", Time: now})
		if stop { // a wrong password elsewhere: a failure, which binds nothing
			line := fmt.Sprintf("AS_REQ (2 etypes {aes256-cts-hmac-sha1-96(18), aes128-cts-hmac-sha1-96(17)}) %s: PREAUTH_FAILED: %s for krbtgt/EXAMPLE.COM@EXAMPLE.COM, Preauthentication failed", real, principal)
			out = append(out, AccessLine{Line: line, User: principal, SrcAddr: real, Action: "login", Outcome: "failure", Time: now})
		}
	case AccessWindows:
		logon := fmt.Sprintf("0x%x", 0x3e700+i)
		mk := func(id int, ip string) string {
			data := map[string]any{"TargetUserName": user, "TargetDomainName": "EXAMPLE", "TargetLogonId": logon, "LogonType": "3", "AuthenticationPackageName": "Kerberos"}
			if ip != "" {
				data["IpAddress"], data["IpPort"] = ip, fmt.Sprint(port)
			}
			b, _ := json.Marshal(map[string]any{"@timestamp": now.Format(time.RFC3339Nano),
				"winlog": map[string]any{"event_id": id, "channel": "Security", "computer_name": "dc1.example.com", "event_data": data}})
			return string(b)
		}
		out = append(out, AccessLine{Line: mk(4624, host), User: `EXAMPLE\` + user, SrcAddr: host, Action: "login", Outcome: "success", Time: now})
		if stop {
			out = append(out, AccessLine{Line: mk(4634, ""), User: `EXAMPLE\` + user, Action: "logout", Outcome: "success", Time: now})
		}
	case AccessDHCP:
		name := fmt.Sprintf("laptop-%d", i%identityHosts)
		out = append(out, AccessLine{Line: fmt.Sprintf("DHCPACK(eth0) %s %s %s", host, mac, name), SrcAddr: host, Action: "session_open", Outcome: "success", Time: now})
		if stop {
			out = append(out, AccessLine{Line: fmt.Sprintf("DHCPRELEASE(eth0) %s %s", host, mac), SrcAddr: host, Action: "session_close", Outcome: "success", Time: now})
		}
	}
	return out
}
