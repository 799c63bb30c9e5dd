package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// AccessFormat is an access-log format the simulator writes. Values match
// the collector's format names.
type AccessFormat string

// Access-log formats.
const (
	AccessSSHD     AccessFormat = "sshd"
	AccessNginx    AccessFormat = "nginx"
	AccessK8sAudit AccessFormat = "k8s_audit"
	AccessGateway  AccessFormat = "gateway"
	// Identity sources (sessions and leases that bind the flow
	// generator's web hosts, see identity.go).
	AccessOpenVPN  AccessFormat = "openvpn"
	AccessRADIUS   AccessFormat = "radius"
	AccessKerberos AccessFormat = "kerberos"
	AccessWindows  AccessFormat = "windows"
	AccessDHCP     AccessFormat = "dhcp"
)

// ParseAccessFormat parses a format name; the error lists valid values.
func ParseAccessFormat(s string) (AccessFormat, error) {
	switch f := AccessFormat(strings.ToLower(strings.TrimSpace(s))); f {
	case AccessSSHD, AccessNginx, AccessK8sAudit, AccessGateway,
		AccessOpenVPN, AccessRADIUS, AccessKerberos, AccessWindows, AccessDHCP:
		return f, nil
	}
	return "", fmt.Errorf("unknown access format %q: valid values are sshd, nginx, k8s_audit, gateway, openvpn, radius, kerberos, windows, dhcp", s)
}

// AccessLine is one simulated log line and what a collector should make
// of it.
type AccessLine struct {
	Line    string // the log line itself, without syslog header or newline
	User    string
	SrcAddr string // IP text, "" when the line has none
	Action  string // login, logout, session_open, session_close, disconnect, or the verb
	Outcome string // success, failure, denied or unknown
	Time    time.Time
}

// AccessGenerator writes realistic access-log lines for one format:
// logins that succeed and fail, sessions that open and close, requests
// that are denied. The same seed gives the same lines.
type AccessGenerator struct {
	format  AccessFormat
	rng     *rand.Rand
	clock   func() time.Time
	pending []AccessLine // the rest of a multi-line scenario
	session int
	bound   int // identity formats: sessions started so far
}

// NewAccessGenerator returns a generator for f.
func NewAccessGenerator(f AccessFormat, seed int64, clock func() time.Time) *AccessGenerator {
	if clock == nil {
		clock = time.Now
	}
	return &AccessGenerator{format: f, rng: rand.New(rand.NewPCG(uint64(seed), 0xacce55)), clock: clock}
}

var (
	simUsers    = []string{"alice", "bob", "carol", "dave", "erin", "svc-deploy", "svc-backup"}
	simBadUsers = []string{"admin", "oracle", "test", "ubuntu", "postgres"}
	simPaths    = []string{"/", "/api/orders", "/api/users/42", "/login", "/static/app.js", "/admin", "/metrics"}
	simAgents   = []string{"Mozilla/5.0 (X11; Linux x86_64)", "curl/7.88.1", "Go-http-client/1.1", "kube-probe/1.29"}
)

// addr picks a client address. Internal ones come from 10.x.200-203.0/24,
// inside the usual segments but away from the flow generator's hosts, so
// simulated logins do not attribute simulated flows to random users.
func (g *AccessGenerator) addr() string {
	switch g.rng.IntN(10) {
	case 0:
		return fmt.Sprintf("2001:db8:1:200::%x", 1+g.rng.IntN(250))
	case 1, 2:
		return fmt.Sprintf("198.51.100.%d", 1+g.rng.IntN(200))
	default:
		return fmt.Sprintf("10.%d.%d.%d", 1+g.rng.IntN(3), 200+g.rng.IntN(4), 1+g.rng.IntN(250))
	}
}

func (g *AccessGenerator) pick(s []string) string { return s[g.rng.IntN(len(s))] }

// Next returns the next line.
func (g *AccessGenerator) Next() AccessLine {
	if len(g.pending) == 0 {
		g.pending = g.scenario()
	}
	l := g.pending[0]
	g.pending = g.pending[1:]
	return l
}

func (g *AccessGenerator) scenario() []AccessLine {
	now := g.clock().UTC().Truncate(time.Millisecond)
	switch g.format {
	case AccessSSHD:
		return g.sshd(now)
	case AccessNginx:
		return []AccessLine{g.nginx(now)}
	case AccessK8sAudit:
		return []AccessLine{g.k8s(now)}
	case AccessOpenVPN, AccessRADIUS, AccessKerberos, AccessWindows, AccessDHCP:
		return g.identity(now)
	default:
		return g.gateway(now)
	}
}

func (g *AccessGenerator) sshd(now time.Time) []AccessLine {
	addr, port := g.addr(), 30000+g.rng.IntN(30000)
	switch r := g.rng.IntN(10); {
	case r < 6: // a login, a session, a logout
		user := g.pick(simUsers)
		method := []string{"publickey", "password", "keyboard-interactive/pam"}[g.rng.IntN(3)]
		return []AccessLine{
			{Line: fmt.Sprintf("Accepted %s for %s from %s port %d ssh2", method, user, addr, port), User: user, SrcAddr: addr, Action: "login", Outcome: "success", Time: now},
			{Line: fmt.Sprintf("pam_unix(sshd:session): session opened for user %s(uid=1000) by (uid=0)", user), User: user, Action: "session_open", Outcome: "success", Time: now},
			{Line: fmt.Sprintf("pam_unix(sshd:session): session closed for user %s", user), User: user, Action: "session_close", Outcome: "success", Time: now},
		}
	case r < 9: // password guessing
		if g.rng.IntN(2) == 0 {
			user := g.pick(simBadUsers)
			return []AccessLine{{Line: fmt.Sprintf("Failed password for invalid user %s from %s port %d ssh2", user, addr, port), User: user, SrcAddr: addr, Action: "login", Outcome: "failure", Time: now}}
		}
		user := g.pick(simUsers)
		return []AccessLine{{Line: fmt.Sprintf("Failed password for %s from %s port %d ssh2", user, addr, port), User: user, SrcAddr: addr, Action: "login", Outcome: "failure", Time: now}}
	default:
		user := g.pick(simBadUsers)
		return []AccessLine{{Line: fmt.Sprintf("Invalid user %s from %s port %d", user, addr, port), User: user, SrcAddr: addr, Action: "login", Outcome: "failure", Time: now}}
	}
}

func (g *AccessGenerator) nginx(now time.Time) AccessLine {
	addr := g.addr()
	user, status := "-", 200
	switch r := g.rng.IntN(20); {
	case r < 3:
		status = 401
	case r < 5:
		status, user = 403, g.pick(simUsers)
	case r < 6:
		status = 502
	case r < 8:
		status = 304
	case r < 14:
		user = g.pick(simUsers)
	}
	method := []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}[g.rng.IntN(6)]
	path := g.pick(simPaths)
	outcome := "success" // the parser's ECS rule: 401/403 denied, other 4xx/5xx failure
	switch {
	case status == 401 || status == 403:
		outcome = "denied"
	case status >= 400:
		outcome = "failure"
	}
	line := fmt.Sprintf(`%s - %s [%s] "%s %s HTTP/1.1" %d %d "-" "%s"`, addr, user, now.Format("02/Jan/2006:15:04:05 -0700"),
		method, path, status, 200+g.rng.IntN(50000), g.pick(simAgents))
	if user == "-" {
		user = ""
	}
	return AccessLine{Line: line, User: user, SrcAddr: addr, Action: method, Outcome: outcome, Time: now.Truncate(time.Second)}
}

func (g *AccessGenerator) k8s(now time.Time) AccessLine {
	user := g.pick([]string{"alice", "bob", "system:serviceaccount:ci:deployer", "system:serviceaccount:monitoring:prometheus"})
	verb := g.pick([]string{"get", "list", "watch", "create", "delete", "patch"})
	resource := g.pick([]string{"pods", "secrets", "deployments", "configmaps"})
	ns := g.pick([]string{"default", "payments", "kube-system"})
	code, decision, outcome := 200, "allow", "success"
	if g.rng.IntN(6) == 0 {
		code, decision, outcome = 403, "forbid", "denied"
	}
	addr := g.addr()
	g.session++
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
		"auditID":                  fmt.Sprintf("5f0c%04x-1d2e-4b6a-9c1e-%012x", g.session, g.rng.Uint64()&0xffffffffffff),
		"stage":                    "ResponseComplete",
		"requestURI":               fmt.Sprintf("/api/v1/namespaces/%s/%s", ns, resource),
		"verb":                     verb,
		"user":                     map[string]any{"username": user, "groups": []string{"system:authenticated"}},
		"sourceIPs":                []string{addr},
		"userAgent":                "kubectl/v1.29.2 (linux/amd64)",
		"objectRef":                map[string]any{"resource": resource, "namespace": ns, "apiVersion": "v1"},
		"responseStatus":           map[string]any{"metadata": map[string]any{}, "code": code},
		"requestReceivedTimestamp": now.Add(-3 * time.Millisecond).Format("2006-01-02T15:04:05.000000Z"),
		"stageTimestamp":           now.Format("2006-01-02T15:04:05.000000Z"),
		"annotations":              map[string]any{"authorization.k8s.io/decision": decision, "authorization.k8s.io/reason": ""},
	}
	b, _ := json.Marshal(ev)
	return AccessLine{Line: string(b), User: user, SrcAddr: addr, Action: verb, Outcome: outcome, Time: now}
}

func (g *AccessGenerator) gateway(now time.Time) []AccessLine {
	user := g.pick(simUsers)
	addr := g.addr()
	g.session++
	sid := fmt.Sprintf("sess-%06d", g.session)
	target := g.pick([]string{"orders-db.internal:5432", "billing-db.internal:3306", "bastion.internal:22"})
	proto := map[string]string{"5432": "postgres", "3306": "mysql", "22": "ssh"}[target[strings.LastIndexByte(target, ':')+1:]]
	mk := func(verb, status, action, outcome string) AccessLine {
		b, _ := json.Marshal(map[string]any{"time": now.Format(time.RFC3339Nano), "user": user, "src_addr": addr,
			"target": target, "protocol": proto, "verb": verb, "status": status, "session_id": sid})
		return AccessLine{Line: string(b), User: user, SrcAddr: addr, Action: action, Outcome: outcome, Time: now}
	}
	if g.rng.IntN(5) == 0 {
		return []AccessLine{mk("connect", "denied", "session_open", "denied")}
	}
	return []AccessLine{mk("connect", "success", "session_open", "success"), mk("disconnect", "success", "session_close", "success")}
}

// AccessConfig describes one access simulation run.
type AccessConfig struct {
	// Target is where lines go: udp://host:port or tcp://host:port (syslog,
	// RFC 3164 with the format's tag) or http://host:port (POST
	// /v1/access?format=...).
	Target string
	Format AccessFormat
	// Rate is lines per second; 0 sends as fast as possible.
	Rate int
	// Count stops after this many lines; Duration after this long.
	Count    int
	Duration time.Duration
	Seed     int64
	// Hostname is the syslog HOSTNAME (default "web-1").
	Hostname string
	// Token is a bearer token for HTTP targets.
	Token string
	// Progress, when set, is called about once a second.
	Progress func(AccessTotals)
}

// AccessTotals is what a run sent.
type AccessTotals struct {
	Lines     uint64
	ByOutcome map[string]uint64 // success, failure, denied, unknown
	ByAction  map[string]uint64
}

func (t AccessTotals) String() string {
	return fmt.Sprintf("%d lines (success=%d failure=%d denied=%d)", t.Lines, t.ByOutcome["success"], t.ByOutcome["failure"], t.ByOutcome["denied"])
}

var syslogTag = map[AccessFormat]string{AccessSSHD: "sshd", AccessNginx: "nginx", AccessK8sAudit: "k8s_audit", AccessGateway: "gateway",
	AccessOpenVPN: "openvpn", AccessRADIUS: "radiusd", AccessKerberos: "krb5kdc", AccessWindows: "winlogbeat", AccessDHCP: "dnsmasq-dhcp"}

// RunAccess sends simulated access-log lines and returns exactly what it
// sent. Over HTTP, lines go in requests of up to 100 and count once the
// collector answered 2xx.
func RunAccess(ctx context.Context, cfg AccessConfig) (AccessTotals, error) {
	tot := AccessTotals{ByOutcome: map[string]uint64{}, ByAction: map[string]uint64{}}
	if cfg.Count == 0 && cfg.Duration == 0 {
		return tot, errors.New("simulate: give Count or Duration")
	}
	u, err := url.Parse(cfg.Target)
	if err != nil || u.Host == "" {
		return tot, fmt.Errorf("simulate: Target %q: want udp://host:port, tcp://host:port or http://host:port", cfg.Target)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "web-1"
	}
	gen := NewAccessGenerator(cfg.Format, cfg.Seed, nil)
	var send func(lines []AccessLine) error
	batchSize := 1
	switch u.Scheme {
	case "udp", "tcp":
		conn, err := net.Dial(u.Scheme, u.Host)
		if err != nil {
			return tot, fmt.Errorf("simulate: %w", err)
		}
		defer conn.Close()
		pid := 1000 + cfg.Seed%9000
		var buf []byte
		send = func(lines []AccessLine) error {
			buf = buf[:0]
			for _, l := range lines {
				// RFC 3164: <PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG; facility
				// auth (4) for sshd, local7 (23) for the rest, severity info.
				pri := 23*8 + 6
				if cfg.Format == AccessSSHD {
					pri = 4*8 + 6
				}
				buf = fmt.Appendf(buf, "<%d>%s %s %s[%d]: %s", pri, l.Time.Format(time.Stamp), cfg.Hostname, syslogTag[cfg.Format], pid, l.Line)
				if u.Scheme == "tcp" {
					buf = append(buf, '\n')
				}
			}
			_, err := conn.Write(buf)
			return err
		}
	case "http", "https":
		batchSize = 100
		client := &http.Client{Timeout: 30 * time.Second}
		endpoint := strings.TrimSuffix(cfg.Target, "/") + "/v1/access?format=" + string(cfg.Format)
		send = func(lines []AccessLine) error {
			var body bytes.Buffer
			for _, l := range lines {
				body.WriteString(l.Line)
				body.WriteByte('\n')
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, &body)
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "text/plain")
			if cfg.Token != "" {
				req.Header.Set("Authorization", "Bearer "+cfg.Token)
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("collector answered %s", resp.Status)
			}
			return nil
		}
	default:
		return tot, fmt.Errorf("simulate: Target %q: scheme must be udp, tcp or http", cfg.Target)
	}

	start := time.Now()
	nextProgress := start.Add(time.Second)
	lines := make([]AccessLine, 0, batchSize)
	for {
		if err := ctx.Err(); err != nil {
			return tot, err
		}
		n := batchSize
		if cfg.Count > 0 {
			n = min(n, cfg.Count-int(tot.Lines))
			if n <= 0 {
				return tot, nil
			}
		}
		if cfg.Duration > 0 && time.Since(start) >= cfg.Duration {
			return tot, nil
		}
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(tot.Lines) / float64(cfg.Rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return tot, ctx.Err()
				case <-time.After(d):
				}
			}
		}
		lines = lines[:0]
		for i := 0; i < n; i++ {
			lines = append(lines, gen.Next())
		}
		if err := send(lines); err != nil {
			return tot, fmt.Errorf("simulate: sending to %s: %w", cfg.Target, err)
		}
		for _, l := range lines {
			tot.Lines++
			tot.ByOutcome[l.Outcome]++
			tot.ByAction[l.Action]++
		}
		if cfg.Progress != nil && time.Now().After(nextProgress) {
			cfg.Progress(tot)
			nextProgress = time.Now().Add(time.Second)
		}
	}
}
