package access

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/ingest/access/parser"
)

// Configuration is the ingest.access section of the configuration file.
type Configuration struct {
	// SyslogListen lists syslog listeners as scheme://host:port: udp://
	// (one datagram is one message), tcp:// (newline or RFC 6587 octet
	// counting, detected per message) and tls:// (tcp:// over TLS with
	// tls_cert and tls_key, as RFC 5425).
	SyslogListen []string `yaml:"syslog_listen"`
	// SyslogIdleTimeout closes a TCP syslog connection that sent nothing
	// for this long.
	SyslogIdleTimeout time.Duration `yaml:"syslog_idle_timeout"`
	// SyslogMaxConnections bounds concurrent TCP syslog connections per
	// listener; a connection beyond it closes the one idle longest.
	SyslogMaxConnections int `yaml:"syslog_max_connections"`
	// SyslogMaxConnectionsPerSource bounds the TCP syslog connections of
	// one source (an IPv4 address or an IPv6 /64) per listener; a new
	// connection beyond it closes that source's one idle longest.
	SyslogMaxConnectionsPerSource int `yaml:"syslog_max_connections_per_source"`
	// SyslogReceiveBuffer is the kernel receive buffer requested for each
	// udp:// syslog socket (SO_RCVBUFFORCE, else SO_RCVBUF capped by
	// net.core.rmem_max; the effective size is logged): what absorbs a
	// burst while the reader is busy.
	SyslogReceiveBuffer int `yaml:"syslog_receive_buffer"`
	// SyslogApps maps a syslog APP-NAME (tag) to a log format, on top of
	// the parser's built-in table (sshd, nginx, apache2, httpd…), for
	// example {web-front: nginx}.
	SyslogApps map[string]string `yaml:"syslog_apps"`

	// HTTPListen is where POST /v1/access and GET /v1/health are served
	// (host:port); empty disables the HTTP intake.
	HTTPListen string `yaml:"http_listen"`
	// HTTPTokens are the accepted bearer tokens; empty means no
	// authentication.
	HTTPTokens []string `yaml:"http_tokens"`
	// HTTPMaxBody bounds a request body in bytes; larger bodies get 413.
	HTTPMaxBody int `yaml:"http_max_body"`
	// HTTPMaxConcurrent bounds the POST /v1/access requests read and
	// parsed at once; others wait for a slot (up to http_ack_timeout,
	// then 503). Bodies are decoded as they arrive, so the intake holds
	// at most about http_max_concurrent × max(http_max_body, buffers)
	// of request data (README, "Memory").
	HTTPMaxConcurrent int `yaml:"http_max_concurrent"`
	// HTTPReadTimeout bounds reading one request body once it has its
	// slot; HTTPReadIdleTimeout closes a request whose body sends
	// nothing for that long (a slow sender holding a slot).
	HTTPReadTimeout     time.Duration `yaml:"http_read_timeout"`
	HTTPReadIdleTimeout time.Duration `yaml:"http_read_idle_timeout"`
	// HTTPAckTimeout bounds how long a request waits for the broker to
	// acknowledge its events before answering 503.
	HTTPAckTimeout time.Duration `yaml:"http_ack_timeout"`
	// TLSCert and TLSKey are PEM files; when set, the HTTP intake serves
	// HTTPS and tls:// syslog listeners use them.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// TLSClientCA is a PEM file of CA certificates; when set, tls://
	// syslog listeners and the HTTPS intake require a client certificate
	// signed by one of them and refuse the connection otherwise.
	TLSClientCA string `yaml:"tls_client_ca"`

	// TrustedSenders are the CIDRs (or single addresses) of the senders
	// whose events may bind identities; empty means every sender. Events
	// from other syslog or HTTP peers are stored with trusted = 0 and the
	// enricher ignores them. Tailed files are always trusted.
	TrustedSenders []string `yaml:"trusted_senders"`
	// HTTPTokenHosts maps a bearer token to what its events may claim:
	// entries HOST (any source from that host), HOST/SOURCE (only that
	// source, such as web-1/nginx) or */SOURCE. Its tokens are accepted
	// like http_tokens. When set, an HTTP event whose token has no entry
	// matching its host and source is stored untrusted.
	HTTPTokenHosts map[string][]string `yaml:"http_token_hosts"`

	// Files are log files to tail.
	Files []FileConfiguration `yaml:"files"`
	// TailPollInterval is how often tailed files are checked for new
	// lines and rotation.
	TailPollInterval time.Duration `yaml:"tail_poll_interval"`

	// Timezone is the IANA zone (or "Local") of timestamps that carry
	// none, such as RFC 3164 syslog and sshd file lines.
	Timezone string `yaml:"timezone"`
	// JSONMapping adapts format json (files, ?format=json) to another
	// JSON layout. The HTTP intake's default body schema always uses the
	// parser's DefaultJSONMapping.
	JSONMapping JSONMappingConfiguration `yaml:"json_mapping"`
	// MaxLineBytes bounds one log line or syslog message; longer ones
	// are dead-lettered as too_long.
	MaxLineBytes int `yaml:"max_line_bytes"`
}

// JSONMappingConfiguration is ingest.access.json_mapping: for each
// AccessEvent field, the key of the JSON object that holds it (a dotted
// path for nested objects, see parser.JSONMapping). An empty value keeps
// the default key of the generic schema (the field name itself: user,
// src_addr…); "-" leaves the field unmapped.
type JSONMappingConfiguration struct {
	Time       string `yaml:"time"`
	Source     string `yaml:"source"`
	Host       string `yaml:"host"`
	User       string `yaml:"user"`
	SrcAddr    string `yaml:"src_addr"`
	SrcPort    string `yaml:"src_port"`
	DstAddr    string `yaml:"dst_addr"`
	DstHost    string `yaml:"dst_host"`
	DstPort    string `yaml:"dst_port"`
	Resource   string `yaml:"resource"`
	Action     string `yaml:"action"`
	Outcome    string `yaml:"outcome"`
	SessionID  string `yaml:"session_id"`
	AuthMethod string `yaml:"auth_method"`
	Status     string `yaml:"status"`
	UserAgent  string `yaml:"user_agent"`
	// ForwardedFor is the X-Forwarded-For chain, client first.
	ForwardedFor string `yaml:"forwarded_for"`
	// TimeLayout is a Go time layout for string times; empty takes RFC
	// 3339 strings and Unix time numbers.
	TimeLayout string `yaml:"time_layout"`
	// SuccessValues, FailureValues and DeniedValues are the values of
	// the outcome key meaning each outcome; empty keeps the parser's.
	SuccessValues []string `yaml:"success_values"`
	FailureValues []string `yaml:"failure_values"`
	DeniedValues  []string `yaml:"denied_values"`
}

// jsonMapping builds the parser's mapping from the configuration over
// the generic schema's, and checks it by building a parser.
func jsonMapping(c JSONMappingConfiguration) (parser.JSONMapping, error) {
	m := parser.DefaultJSONMapping()
	for _, f := range []struct {
		dst *string
		val string
	}{
		{&m.Time, c.Time}, {&m.Source, c.Source}, {&m.Host, c.Host}, {&m.User, c.User},
		{&m.SrcAddr, c.SrcAddr}, {&m.SrcPort, c.SrcPort}, {&m.DstAddr, c.DstAddr},
		{&m.DstHost, c.DstHost}, {&m.DstPort, c.DstPort}, {&m.Resource, c.Resource},
		{&m.Action, c.Action}, {&m.Outcome, c.Outcome}, {&m.SessionID, c.SessionID},
		{&m.AuthMethod, c.AuthMethod}, {&m.Status, c.Status}, {&m.UserAgent, c.UserAgent},
		{&m.ForwardedFor, c.ForwardedFor},
	} {
		switch f.val {
		case "":
		case "-":
			*f.dst = ""
		default:
			*f.dst = f.val
		}
	}
	m.TimeLayout = c.TimeLayout
	if len(c.SuccessValues) > 0 {
		m.SuccessValues = c.SuccessValues
	}
	if len(c.FailureValues) > 0 {
		m.FailureValues = c.FailureValues
	}
	if len(c.DeniedValues) > 0 {
		m.DeniedValues = c.DeniedValues
	}
	if _, err := parser.New(parser.FormatJSON, parser.WithJSONMapping(m)); err != nil {
		return m, err
	}
	return m, nil
}

// FileConfiguration is one ingest.access.files entry.
type FileConfiguration struct {
	// Path is the file to tail; it may not exist yet. "-" reads a stream
	// of k8s_pods documents from standard input.
	Path string `yaml:"path"`
	// Format is a parser format (sshd, nginx, apache, k8s_audit,
	// gateway, json, openvpn, radius, kerberos, windows, dhcp), a
	// snapshot format (openvpn_status, dhcp_leases, k8s_pods: the file is
	// re-read whole when it changes, see README "Identity sources") or syslog: lines as syslog daemons write them
	// ("Jan  2 03:04:05 host sshd[42]: …"), the format then chosen by
	// the tag as for syslog messages.
	Format string `yaml:"format"`
	// Host names the host that wrote the file; empty means this
	// collector's host name.
	Host string `yaml:"host"`
}

// DefaultConfiguration returns the defaults of DESIGN.md.
func DefaultConfiguration() Configuration {
	return Configuration{
		SyslogListen:                  []string{"udp://0.0.0.0:5514", "tcp://0.0.0.0:5514"},
		SyslogIdleTimeout:             5 * time.Minute,
		SyslogMaxConnections:          1024,
		SyslogMaxConnectionsPerSource: 32,
		HTTPListen:                    "127.0.0.1:8080",
		SyslogReceiveBuffer:           32 << 20,
		HTTPMaxBody:                   10 << 20,
		HTTPMaxConcurrent:             8,
		HTTPReadTimeout:               2 * time.Minute,
		HTTPReadIdleTimeout:           10 * time.Second,
		HTTPAckTimeout:                30 * time.Second,
		TailPollInterval:              250 * time.Millisecond,
		Timezone:                      "UTC",
		MaxLineBytes:                  64 << 10,
	}
}

// syslogProtocol is the scheme of a syslog_listen entry.
type syslogProtocol string

const (
	syslogUDP syslogProtocol = "udp"
	syslogTCP syslogProtocol = "tcp"
	syslogTLS syslogProtocol = "tls"
)

type syslogSpec struct {
	Protocol syslogProtocol
	Addr     string // host:port
}

func parseSyslogListen(s string) (syslogSpec, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return syslogSpec{}, fmt.Errorf("%q is not scheme://host:port (for example udp://0.0.0.0:5514)", s)
	}
	p := syslogProtocol(strings.ToLower(u.Scheme))
	if p != syslogUDP && p != syslogTCP && p != syslogTLS {
		return syslogSpec{}, fmt.Errorf("%q: unknown scheme %q; use udp://, tcp:// or tls://", s, u.Scheme)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return syslogSpec{}, fmt.Errorf("%q: %v", s, err)
	}
	return syslogSpec{Protocol: p, Addr: u.Host}, nil
}

// formatOf checks a format name of files or syslog_apps.
func formatOf(s string, allowSyslog bool) (parser.Format, error) {
	if allowSyslog && s == string(parser.FormatSyslog) {
		return parser.FormatSyslog, nil
	}
	f, err := parser.ParseFormat(s)
	if err == nil && !allowSyslog && parser.IsSnapshot(f) {
		return "", fmt.Errorf("format %q describes a whole file: use it in ingest.access.files, not for syslog messages", s)
	}
	return f, err
}

// Validate checks the configuration; errors name the key.
func (c Configuration) Validate() error {
	var errs []error
	for i, l := range c.SyslogListen {
		spec, err := parseSyslogListen(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("ingest.access.syslog_listen[%d]: %w", i, err))
			continue
		}
		if spec.Protocol == syslogTLS && c.TLSCert == "" {
			errs = append(errs, fmt.Errorf("ingest.access.syslog_listen[%d]: %q needs ingest.access.tls_cert and tls_key", i, l))
		}
	}
	if c.SyslogIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ingest.access.syslog_idle_timeout: must be positive, got %s", c.SyslogIdleTimeout))
	}
	if c.SyslogMaxConnections < 1 {
		errs = append(errs, fmt.Errorf("ingest.access.syslog_max_connections: must be at least 1, got %d", c.SyslogMaxConnections))
	}
	if c.SyslogMaxConnectionsPerSource < 1 || (c.SyslogMaxConnections >= 1 && c.SyslogMaxConnectionsPerSource > c.SyslogMaxConnections) {
		errs = append(errs, fmt.Errorf("ingest.access.syslog_max_connections_per_source: must be between 1 and syslog_max_connections (%d), got %d", c.SyslogMaxConnections, c.SyslogMaxConnectionsPerSource))
	}
	for app, f := range c.SyslogApps {
		if app == "" {
			errs = append(errs, errors.New("ingest.access.syslog_apps: empty app name"))
		}
		if _, err := formatOf(f, false); err != nil {
			errs = append(errs, fmt.Errorf("ingest.access.syslog_apps.%s: %w", app, err))
		}
	}
	if c.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
			errs = append(errs, fmt.Errorf("ingest.access.http_listen: %q is not host:port (or empty to disable)", c.HTTPListen))
		}
	}
	for i, t := range c.HTTPTokens {
		if strings.TrimSpace(t) == "" || strings.ContainsAny(t, " \t\r\n") {
			errs = append(errs, fmt.Errorf("ingest.access.http_tokens[%d]: must be non-empty and without spaces", i))
		}
	}
	if c.HTTPMaxBody < 1 {
		errs = append(errs, fmt.Errorf("ingest.access.http_max_body: must be a positive size in bytes, got %d", c.HTTPMaxBody))
	}
	if c.SyslogReceiveBuffer < 0 {
		errs = append(errs, fmt.Errorf("ingest.access.syslog_receive_buffer: must be a size in bytes (0 keeps the kernel's default), got %d", c.SyslogReceiveBuffer))
	}
	if c.HTTPMaxConcurrent < 1 {
		errs = append(errs, fmt.Errorf("ingest.access.http_max_concurrent: must be at least 1, got %d", c.HTTPMaxConcurrent))
	}
	if c.HTTPReadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ingest.access.http_read_timeout: must be positive, got %s", c.HTTPReadTimeout))
	}
	if c.HTTPReadIdleTimeout <= 0 || c.HTTPReadIdleTimeout > c.HTTPReadTimeout && c.HTTPReadTimeout > 0 {
		errs = append(errs, fmt.Errorf("ingest.access.http_read_idle_timeout: must be positive and at most http_read_timeout, got %s", c.HTTPReadIdleTimeout))
	}
	if c.HTTPAckTimeout <= 0 {
		errs = append(errs, fmt.Errorf("ingest.access.http_ack_timeout: must be positive, got %s", c.HTTPAckTimeout))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("ingest.access.tls_cert: tls_cert and tls_key must be set together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("ingest.access.tls_client_ca: needs ingest.access.tls_cert and tls_key (client certificates are checked on TLS only)"))
	}
	for i, s := range c.TrustedSenders {
		if _, err := parseSender(s); err != nil {
			errs = append(errs, fmt.Errorf("ingest.access.trusted_senders[%d]: %w", i, err))
		}
	}
	for _, token := range sortedKeys(c.HTTPTokenHosts) {
		if strings.TrimSpace(token) == "" || strings.ContainsAny(token, " \t\r\n") {
			errs = append(errs, errors.New("ingest.access.http_token_hosts: tokens must be non-empty and without spaces"))
			continue
		}
		claims := c.HTTPTokenHosts[token]
		if len(claims) == 0 {
			errs = append(errs, fmt.Errorf("ingest.access.http_token_hosts.%s: list the hosts (HOST, HOST/SOURCE or */SOURCE) the token may claim", redact(token)))
		}
		for i, cl := range claims {
			if _, err := parseClaim(cl); err != nil {
				errs = append(errs, fmt.Errorf("ingest.access.http_token_hosts.%s[%d]: %w", redact(token), i, err))
			}
		}
	}
	seen := map[string]int{}
	for i, f := range c.Files {
		if f.Path == "" {
			errs = append(errs, fmt.Errorf("ingest.access.files[%d].path: required", i))
		} else if j, dup := seen[f.Path]; dup {
			errs = append(errs, fmt.Errorf("ingest.access.files[%d].path: %q is already tailed by files[%d]", i, f.Path, j))
		} else {
			seen[f.Path] = i
		}
		if _, err := formatOf(f.Format, true); err != nil {
			errs = append(errs, fmt.Errorf("ingest.access.files[%d].format: %w (or syslog)", i, err))
		} else if f.Path == StdinPath && f.Format != string(parser.FormatK8sPods) {
			errs = append(errs, fmt.Errorf("ingest.access.files[%d].path: \"-\" (standard input) is read as format k8s_pods only, not %s", i, f.Format))
		}
	}
	if c.TailPollInterval < 10*time.Millisecond || c.TailPollInterval > time.Minute {
		errs = append(errs, fmt.Errorf("ingest.access.tail_poll_interval: must be between 10ms and 1m, got %s", c.TailPollInterval))
	}
	if _, err := time.LoadLocation(c.Timezone); err != nil || c.Timezone == "" {
		errs = append(errs, fmt.Errorf("ingest.access.timezone: %q is not an IANA time zone (such as UTC, Local or Europe/Paris)", c.Timezone))
	}
	if _, err := jsonMapping(c.JSONMapping); err != nil {
		errs = append(errs, fmt.Errorf("ingest.access.json_mapping: %w", err))
	}
	if c.MaxLineBytes < 256 || c.MaxLineBytes > parser.MaxLineLength {
		errs = append(errs, fmt.Errorf("ingest.access.max_line_bytes: must be between 256 and %d (the parsers' bound), got %d", parser.MaxLineLength, c.MaxLineBytes))
	}
	return errors.Join(errs...)
}
