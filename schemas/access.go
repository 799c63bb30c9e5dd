package schemas

// Outcome says how an access attempt ended. The string form is the value
// stored in ClickHouse's access_events.outcome column.
type Outcome uint8

// Outcomes. Numbers are part of the protobuf contract (access.proto).
const (
	OutcomeUnknown Outcome = 0
	OutcomeSuccess Outcome = 1 // access happened (HTTP below 400)
	OutcomeFailure Outcome = 2 // authentication failed (bad password, unknown user), or HTTP 4xx/5xx other than 401/403/407
	OutcomeDenied  Outcome = 3 // authenticated or not, authorization refused (HTTP 401/403/407, k8s forbid)
)

// String returns the ClickHouse value for o.
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeFailure:
		return "failure"
	case OutcomeDenied:
		return "denied"
	}
	return "unknown"
}

// Actions of access events with a meaning downstream stages rely on: the
// enricher binds an address to a user on ActionLogin (and a successful
// session open) and ends the binding on ActionLogout, ActionSessionClose
// and ActionDisconnect. Web, Kubernetes and gateway events carry their own
// verb (GET, list, connect…) as Action.
const (
	ActionLogin        = "login"         // an authentication attempt (see Outcome)
	ActionLogout       = "logout"        // the user ended the session
	ActionSessionOpen  = "session_open"  // a session started (sshd pam_unix "session opened")
	ActionSessionClose = "session_close" // a session ended
	ActionDisconnect   = "disconnect"    // the connection ended (sshd "Disconnected from")
	// ActionNASRestart: a network access server restarted (RADIUS
	// Accounting-On/Off, the NAS in DstAddr/DstHost), ending every session
	// it reported; the event names no user, address or session.
	ActionNASRestart = "nas_restart"
)

// AccessEvent is one access-log record normalized: who (User) from where
// (SrcAddr) reached what (DstAddr/DstHost/DstPort, Resource), how (Action,
// AuthMethod) and with what Outcome. It is the payload of
// flowaudit.access.v1, keyed by SrcAddr. Empty strings and zero values
// mean "not in the log line".
type AccessEvent struct {
	Time       uint64 // Unix ns when the access happened (from the log line)
	Received   uint64 // Unix ns when flowaudit received the line
	Source     string // log kind: sshd, nginx, apache, k8s_audit, gateway, json
	Host       string // the host that wrote the log line (syslog HOSTNAME, or the collector's host for files)
	User       string
	SrcAddr    Addr
	SrcPort    uint16
	DstAddr    Addr
	DstPort    uint16
	DstHost    string
	Resource   string // URL path, k8s object (namespace/resource/name), database, target host
	Action     string // login, logout, session_open, GET, list, connect…
	Outcome    Outcome
	SessionID  string
	AuthMethod string // password, publickey, keyboard-interactive, token…
	Status     int32  // protocol status code: HTTP status, k8s response code; 0 when none
	UserAgent  string
	// ForwardedFor is the X-Forwarded-For chain of a web request as
	// logged, entries separated by ", ": the client first (SrcAddr when
	// it is an address), the proxy the server saw last. Empty when the
	// client connected directly.
	ForwardedFor string

	// Provenance, set by the collector from the connection, never from
	// the line. PeerAddr is the sender's real address (the syslog or HTTP
	// peer; zero for tailed files), Listener the listener it came
	// through, and Untrusted says the sender may not bind identities
	// (ingest.access.trusted_senders and http_token_hosts): the enricher
	// ignores such events. The zero value (trusted) is what events
	// written before provenance decode as.
	PeerAddr  Addr
	Listener  string
	Untrusted bool

	// Identity sources. Binding says whether the event starts, renews or
	// ends a session binding of SrcAddr (BindingNone: the login/logout
	// rules of Action apply). A stop may name no SrcAddr: it then ends
	// the bindings its SessionID started (Windows 4634, OpenVPN
	// disconnects). Device is the device behind SrcAddr (MAC address,
	// DUID, RADIUS Calling-Station-Id, or namespace/pod), DeviceName its
	// host name, Expires (Unix ns) when the binding ends by itself (DHCP
	// lease expiry; 0: after enrich.identity_ttl), OuterAddr where a
	// tunnel session came from (OpenVPN real address) and Labels a
	// Kubernetes pod's labels ("key=value" sorted by key, comma-separated).
	Binding    Binding
	Device     string
	DeviceName string
	Expires    uint64
	OuterAddr  Addr
	Labels     string
}

// Binding says what an access event does to the session binding of its
// address. Numbers are part of the protobuf contract (access.proto).
type Binding uint8

// Bindings.
const (
	BindingNone   Binding = 0 // no explicit session: logins bind for enrich.identity_ttl, logouts end
	BindingStart  Binding = 1 // a session starts: VPN connect, RADIUS Start, logon, DHCP lease, pod seen
	BindingUpdate Binding = 2 // the session is still up: RADIUS Interim-Update, lease renewal
	BindingStop   Binding = 3 // the session ended: VPN disconnect, RADIUS Stop, logoff, release, pod gone
)

// String returns "", "start", "update" or "stop".
func (b Binding) String() string {
	switch b {
	case BindingStart:
		return "start"
	case BindingUpdate:
		return "update"
	case BindingStop:
		return "stop"
	}
	return ""
}
