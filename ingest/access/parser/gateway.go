package parser

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/flowaudit/flowaudit/schemas"
)

// gatewayParser parses the gateway audit JSON documented in GATEWAY.md.
type gatewayParser struct{}

type gatewayEvent struct {
	Time       json.RawMessage `json:"time"`
	Host       string          `json:"host"`
	User       string          `json:"user"`
	SrcAddr    string          `json:"src_addr"`
	SrcPort    json.RawMessage `json:"src_port"`
	Target     string          `json:"target"`
	TargetHost string          `json:"target_host"`
	TargetPort json.RawMessage `json:"target_port"`
	TargetAddr string          `json:"target_addr"`
	Protocol   string          `json:"protocol"`
	Database   string          `json:"database"`
	Verb       string          `json:"verb"`
	Event      string          `json:"event"`
	Status     string          `json:"status"`
	Success    *bool           `json:"success"`
	SessionID  string          `json:"session_id"`
	AuthMethod string          `json:"auth_method"`
}

var gatewayOutcomes = outcomeWords(defaultSuccessValues, defaultFailureValues, defaultDeniedValues)

func outcomeWords(success, failure, denied []string) map[string]schemas.Outcome {
	m := make(map[string]schemas.Outcome)
	for _, l := range []struct {
		words   []string
		outcome schemas.Outcome
	}{{success, schemas.OutcomeSuccess}, {failure, schemas.OutcomeFailure}, {denied, schemas.OutcomeDenied}} {
		for _, w := range l.words {
			m[strings.ToLower(w)] = l.outcome
		}
	}
	return m
}

// gatewayAction maps a gateway verb or event name to an Action.
func gatewayAction(verb string) string {
	switch strings.ToLower(verb) {
	case "connect", "session.start", "session_start", "db.session.start", "app.session.start":
		return schemas.ActionSessionOpen
	case "disconnect", "session.end", "session_end", "db.session.end", "app.session.end":
		return schemas.ActionSessionClose
	case "login", "user.login", "auth":
		return schemas.ActionLogin
	case "logout", "user.logout":
		return schemas.ActionLogout
	}
	return verb
}

func (gatewayParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(FormatGateway)
	}
	reset(ev, string(FormatGateway), &meta)
	var g gatewayEvent
	if err := decodeObject(line, &g); err != nil {
		return &ParseError{Format: FormatGateway, Reason: ReasonBadJSON, Err: err}
	}
	verb := g.Verb
	if verb == "" {
		verb = g.Event
	}
	if verb == "" {
		return parseErr(FormatGateway, ReasonMissingField, `no "verb" (or "event")`)
	}
	t, absent, err := rawTime(g.Time, "", meta.location())
	if err != nil {
		return &ParseError{Format: FormatGateway, Reason: ReasonBadTime, Err: err}
	}
	if !absent {
		ev.Time = unixNano(t)
	}
	if g.SrcAddr != "" {
		host, port := splitHostPort(g.SrcAddr)
		addr, ok := parseAddr(host)
		if !ok {
			return parseErr(FormatGateway, ReasonBadAddress, "bad src_addr %q", g.SrcAddr)
		}
		ev.SrcAddr = addr
		if port != "" {
			if ev.SrcPort, ok = parsePort(port); !ok {
				return parseErr(FormatGateway, ReasonBadAddress, "bad port in src_addr %q", g.SrcAddr)
			}
		}
	}
	if p, err := rawPort(g.SrcPort); err != nil {
		return &ParseError{Format: FormatGateway, Reason: ReasonBadAddress, Err: err}
	} else if p != 0 {
		ev.SrcPort = p
	}

	// Target: "target" as host[:port], or target_host and target_port.
	target := g.Target
	host, port := splitHostPort(g.Target)
	if host == "" {
		host = g.TargetHost
	}
	if host == "" {
		host = g.TargetAddr
	}
	if port != "" {
		p, ok := parsePort(port)
		if !ok {
			return parseErr(FormatGateway, ReasonBadAddress, "bad port in target %q", g.Target)
		}
		ev.DstPort = p
	}
	if p, err := rawPort(g.TargetPort); err != nil {
		return &ParseError{Format: FormatGateway, Reason: ReasonBadAddress, Err: err}
	} else if p != 0 {
		ev.DstPort = p
	}
	if target == "" && host != "" {
		target = host
		if strings.IndexByte(host, ':') >= 0 {
			target = "[" + host + "]"
		}
		if ev.DstPort != 0 {
			target += ":" + strconv.Itoa(int(ev.DstPort))
		}
	}
	if addr, ok := parseAddr(host); ok {
		ev.DstAddr = addr
	} else {
		ev.DstHost = host
	}
	if g.TargetAddr != "" {
		addr, ok := parseAddr(g.TargetAddr)
		if !ok {
			return parseErr(FormatGateway, ReasonBadAddress, "bad target_addr %q", g.TargetAddr)
		}
		ev.DstAddr = addr
	}

	switch {
	case target == "":
		ev.Resource = g.Database
	case g.Protocol != "":
		ev.Resource = g.Protocol + "://" + target
	default:
		ev.Resource = target
	}
	if g.Database != "" && target != "" {
		ev.Resource += "/" + g.Database
	}

	if g.Host != "" {
		ev.Host = g.Host
	}
	ev.User = g.User
	ev.Action = gatewayAction(verb)
	ev.SessionID = g.SessionID
	ev.AuthMethod = g.AuthMethod
	switch {
	case g.Status != "":
		ev.Outcome = gatewayOutcomes[strings.ToLower(g.Status)]
	case g.Success != nil && *g.Success:
		ev.Outcome = schemas.OutcomeSuccess
	case g.Success != nil:
		ev.Outcome = schemas.OutcomeFailure
	}
	return nil
}
