// Package parser turns access-log lines (sshd, nginx and Apache access
// logs, Kubernetes audit events, gateway audit JSON and generic JSON) into
// schemas.AccessEvent values, and splits syslog messages (RFC 3164 and
// RFC 5424) into header and MSG.
//
// Parsers are pure: bytes in, one event out, no I/O. A Parser holds only
// its configuration, so one value is safe for concurrent use by any number
// of listener goroutines. The line-oriented formats (sshd, nginx, apache)
// and syslog framing are hand-written scanners without regexp; the JSON
// formats use encoding/json (see BenchmarkParseK8sAudit for their cost).
//
// Every failure is a *ParseError whose Reason is a stable label for
// metrics. Lines that belong to the format but describe no access (sshd
// "Server listening on", a Kubernetes "RequestReceived" stage…) return
// ErrIgnored instead, so listeners can count them apart from dead letters.
//
// The gateway audit schema is documented in GATEWAY.md; the generic JSON
// schema (DefaultJSONMapping) in json.go.
package parser

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// Format names a log format. The values are stable: they appear in
// configuration, in the HTTP listener's ?format= query and in metrics
// labels.
type Format string

// Formats accepted by New.
const (
	FormatSSHD     Format = "sshd"      // OpenSSH sshd messages (the syslog MSG part, or an auth.log line)
	FormatNginx    Format = "nginx"     // nginx "combined"/"common" access log (also as `access_log syslog:` lines)
	FormatApache   Format = "apache"    // Apache combined/common (same grammar as nginx; Source "apache")
	FormatK8sAudit Format = "k8s_audit" // one audit.k8s.io/v1 Event JSON object per line
	FormatGateway  Format = "gateway"   // gateway audit JSON, see GATEWAY.md
	FormatJSON     Format = "json"      // generic JSON with a configurable field mapping
	// Identity sources (README, "Identity sources").
	FormatOpenVPN  Format = "openvpn"  // OpenVPN server log lines
	FormatRADIUS   Format = "radius"   // FreeRADIUS accounting: detail file records, linelog lines
	FormatKerberos Format = "kerberos" // MIT krb5kdc log lines
	FormatWindows  Format = "windows"  // Windows Security logon events as JSON (Winlogbeat, WEF)
	FormatDHCP     Format = "dhcp"     // dnsmasq DHCP log lines, Kea lease CSV lines
)

// FormatSyslog is the Format of the *ParseError values returned by
// ParseSyslog. It is not a Format New accepts.
const FormatSyslog Format = "syslog"

var formats = []Format{FormatSSHD, FormatNginx, FormatApache, FormatK8sAudit, FormatGateway, FormatJSON,
	FormatOpenVPN, FormatRADIUS, FormatKerberos, FormatWindows, FormatDHCP}

// Formats returns the line formats New accepts.
func Formats() []Format { return append([]Format(nil), formats...) }

// ParseFormat returns the Format named s: a line format (New) or a
// snapshot format (ParseSnapshot). The error lists the valid names.
func ParseFormat(s string) (Format, error) {
	for _, f := range append(formats, snapshotFormats...) {
		if string(f) == s {
			return f, nil
		}
	}
	var names []string
	for _, f := range append(formats, snapshotFormats...) {
		names = append(names, string(f))
	}
	return "", fmt.Errorf("unknown access log format %q (valid: %s)", s, strings.Join(names, ", "))
}

// MaxLineLength is the longest line a parser accepts; longer lines fail
// with ReasonTooLong.
const MaxLineLength = 64 << 10

// Meta is what the transport knows about a line.
type Meta struct {
	// Received is when flowaudit got the line. It fills
	// AccessEvent.Received and is the event time when the line has none.
	Received time.Time
	// Host is the host that wrote the line: the syslog HOSTNAME, or the
	// collector's host for files and HTTP. It fills AccessEvent.Host
	// unless the line names its host.
	Host string
	// Location is the zone of timestamps that carry none (RFC 3164,
	// auth.log files, custom JSON layouts). nil means UTC.
	Location *time.Location
}

func (m *Meta) location() *time.Location {
	if m.Location == nil {
		return time.UTC
	}
	return m.Location
}

// Parser parses one line, without its trailing newline, into ev,
// overwriting every field of ev. The parser does not retain line; the
// strings it stores in ev are copies. Implementations are safe for
// concurrent use.
type Parser interface {
	Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error
}

type options struct {
	jsonMapping    JSONMapping
	hasJSONMapping bool
}

// Option configures New.
type Option func(*options)

// WithJSONMapping sets the field mapping of FormatJSON (the default is
// DefaultJSONMapping). New rejects it for other formats.
func WithJSONMapping(m JSONMapping) Option {
	return func(o *options) {
		o.jsonMapping = m
		o.hasJSONMapping = true
	}
}

// New returns the Parser for f.
func New(f Format, opts ...Option) (Parser, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.hasJSONMapping && f != FormatJSON {
		return nil, fmt.Errorf("JSON mapping given for format %q: only %q uses one", f, FormatJSON)
	}
	switch f {
	case FormatSSHD:
		return sshdParser{}, nil
	case FormatNginx:
		return webParser{format: FormatNginx}, nil
	case FormatApache:
		return webParser{format: FormatApache}, nil
	case FormatK8sAudit:
		return k8sAuditParser{}, nil
	case FormatGateway:
		return gatewayParser{}, nil
	case FormatOpenVPN:
		return openvpnParser{}, nil
	case FormatRADIUS:
		return radiusParser{}, nil
	case FormatKerberos:
		return kerberosParser{}, nil
	case FormatWindows:
		return windowsParser{}, nil
	case FormatDHCP:
		return dhcpParser{}, nil
	case FormatJSON:
		m := DefaultJSONMapping()
		if o.hasJSONMapping {
			m = o.jsonMapping
		}
		return newJSONParser(m)
	}
	if IsSnapshot(f) {
		return nil, fmt.Errorf("format %q describes a whole file (ParseSnapshot), not lines", f)
	}
	_, err := ParseFormat(string(f))
	return nil, err
}

// Reason classifies a parse failure. The values are stable snake_case
// strings meant to be used as metrics labels.
type Reason string

// Parse failure reasons.
const (
	ReasonNoMatch      Reason = "no_match"      // the line is not this format
	ReasonBadJSON      Reason = "bad_json"      // not a JSON object (JSON formats)
	ReasonBadTime      Reason = "bad_time"      // the line's timestamp does not parse
	ReasonBadAddress   Reason = "bad_address"   // an address field is not an IP address
	ReasonBadUser      Reason = "bad_user"      // the user field holds an address, a list or spaces (fields shifted)
	ReasonMissingField Reason = "missing_field" // a field the format requires is absent
	ReasonTooLong      Reason = "too_long"      // longer than MaxLineLength
)

// ParseError describes why a line could not be parsed. It is permanent:
// parsing the same line again fails the same way, so callers dead-letter
// the line rather than retry.
type ParseError struct {
	Format Format
	Reason Reason
	Err    error
}

// Error formats e as "parse FORMAT: REASON: ERR".
func (e *ParseError) Error() string {
	return fmt.Sprintf("parse %s: %s: %v", e.Format, e.Reason, e.Err)
}

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.Err }

// ErrIgnored is returned, unwrapped, for lines that are valid for the
// format but are not access events (sshd "Server listening on", pam
// "authentication failure" duplicates of "Failed password", Kubernetes
// audit stages other than ResponseComplete and Panic…). Listeners count
// these as ignored, not as dead letters.
var ErrIgnored = errors.New("not an access event")

var errTooLong = fmt.Errorf("line longer than %d bytes", MaxLineLength)

func parseErr(f Format, r Reason, format string, args ...any) error {
	return &ParseError{Format: f, Reason: r, Err: fmt.Errorf(format, args...)}
}

func tooLong(f Format) error {
	return &ParseError{Format: f, Reason: ReasonTooLong, Err: errTooLong}
}

// unixNano converts t to the schema's Unix nanoseconds; the zero time and
// times before 1970 give 0.
func unixNano(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	ns := t.UnixNano()
	if ns < 0 {
		return 0
	}
	return uint64(ns)
}

// reset overwrites ev with the fields every parser sets from meta.
func reset(ev *schemas.AccessEvent, source string, meta *Meta) {
	recv := unixNano(meta.Received)
	*ev = schemas.AccessEvent{
		Time:     recv,
		Received: recv,
		Source:   source,
		Host:     meta.Host,
	}
}

// FormatForApp maps a syslog APP-NAME or TAG to the Format of its
// messages; ok is false for applications without a parser. Matching
// ignores ASCII case.
func FormatForApp(app string) (f Format, ok bool) {
	switch strings.ToLower(app) {
	case "sshd", "sshd-session", "sshd-auth":
		// OpenSSH ≥ 9.8 logs sessions as sshd-session, ≥ 10.0
		// authentication as sshd-auth.
		return FormatSSHD, true
	case "nginx", "nginx_access":
		return FormatNginx, true
	case "apache", "apache2", "httpd":
		return FormatApache, true
	case "kube-apiserver-audit", "k8s_audit":
		return FormatK8sAudit, true
	case "gateway", "teleport", "boundary":
		return FormatGateway, true
	case "krb5kdc":
		return FormatKerberos, true
	case "dnsmasq-dhcp":
		return FormatDHCP, true
	case "radiusd", "freeradius", "linelog":
		return FormatRADIUS, true
	case "windows", "winlogbeat", "microsoft-windows-security-auditing":
		return FormatWindows, true
	}
	if isOpenVPNTag([]byte(app)) {
		return FormatOpenVPN, true
	}
	return "", false
}
