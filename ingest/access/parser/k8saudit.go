package parser

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/flowaudit/flowaudit/schemas"
)

// k8sAuditParser parses Kubernetes audit events (audit.k8s.io/v1 Event,
// v1beta1 accepted too), one JSON object per line as the API server's
// log backend writes them.
//
// Only the final stages are events: ResponseComplete and Panic.
// RequestReceived and ResponseStarted describe the same request again and
// return ErrIgnored, so a policy that logs every stage is not counted
// twice.
//
// Mapping: user.username → User, sourceIPs[0] → SrcAddr, verb → Action,
// objectRef → Resource as "namespace/resource/name/subresource" with
// empty parts left out ("nodes/node-1", "default/pods" for a list) or the
// requestURI without query when there is no objectRef ("/healthz"),
// responseStatus.code → Status, auditID → SessionID, userAgent →
// UserAgent, stageTimestamp (else requestReceivedTimestamp) → Time.
// Outcome is denied when the "authorization.k8s.io/decision" annotation is
// "forbid" or the code is 403, failure for 401 and success otherwise.
//
// Decoding uses encoding/json into a struct that names only these fields
// (request and response objects are skipped unread); see
// BenchmarkParseK8sAudit for the cost.
type k8sAuditParser struct{}

type k8sEvent struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	AuditID    string `json:"auditID"`
	Stage      string `json:"stage"`
	RequestURI string `json:"requestURI"`
	Verb       string `json:"verb"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	SourceIPs []string `json:"sourceIPs"`
	UserAgent string   `json:"userAgent"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int32 `json:"code"`
	} `json:"responseStatus"`
	RequestReceivedTimestamp string `json:"requestReceivedTimestamp"`
	StageTimestamp           string `json:"stageTimestamp"`
	Annotations              struct {
		Decision string `json:"authorization.k8s.io/decision"`
	} `json:"annotations"`
}

var errK8sNotEvent = errors.New(`not an audit.k8s.io Event (kind/apiVersion)`)

func (k8sAuditParser) Parse(line []byte, meta Meta, ev *schemas.AccessEvent) error {
	if len(line) > MaxLineLength {
		return tooLong(FormatK8sAudit)
	}
	reset(ev, string(FormatK8sAudit), &meta)
	var e k8sEvent
	if err := decodeObject(line, &e); err != nil {
		return &ParseError{Format: FormatK8sAudit, Reason: ReasonBadJSON, Err: err}
	}
	if e.Kind != "Event" || !strings.HasPrefix(e.APIVersion, "audit.k8s.io/") {
		return &ParseError{Format: FormatK8sAudit, Reason: ReasonNoMatch, Err: errK8sNotEvent}
	}
	switch e.Stage {
	case "ResponseComplete", "Panic":
	case "RequestReceived", "ResponseStarted":
		return ErrIgnored
	case "":
		return parseErr(FormatK8sAudit, ReasonMissingField, "no stage")
	default:
		return parseErr(FormatK8sAudit, ReasonNoMatch, "unknown stage %q", e.Stage)
	}
	if e.Verb == "" {
		return parseErr(FormatK8sAudit, ReasonMissingField, "no verb")
	}
	ts := e.StageTimestamp
	if ts == "" {
		ts = e.RequestReceivedTimestamp
	}
	if ts != "" {
		t, n, ok := parseRFC3339(ts)
		if !ok || n != len(ts) {
			return parseErr(FormatK8sAudit, ReasonBadTime, "bad timestamp %q", ts)
		}
		ev.Time = unixNano(t)
	}
	if len(e.SourceIPs) > 0 {
		addr, ok := parseAddr(e.SourceIPs[0])
		if !ok {
			return parseErr(FormatK8sAudit, ReasonBadAddress, "bad source IP %q", e.SourceIPs[0])
		}
		ev.SrcAddr = addr
	}
	ev.User = e.User.Username
	ev.Action = e.Verb
	ev.SessionID = e.AuditID
	ev.UserAgent = e.UserAgent
	if r := e.ObjectRef; r != nil && (r.Resource != "" || r.Name != "") {
		parts := make([]string, 0, 4)
		for _, p := range [...]string{r.Namespace, r.Resource, r.Name, r.Subresource} {
			if p != "" {
				parts = append(parts, p)
			}
		}
		ev.Resource = strings.Join(parts, "/")
	} else {
		uri, _, _ := strings.Cut(e.RequestURI, "?")
		ev.Resource = uri
	}
	if e.ResponseStatus != nil {
		ev.Status = e.ResponseStatus.Code
	}
	switch {
	case e.Annotations.Decision == "forbid" || ev.Status == 403:
		ev.Outcome = schemas.OutcomeDenied
	case ev.Status == 401:
		ev.Outcome = schemas.OutcomeFailure
	default:
		ev.Outcome = schemas.OutcomeSuccess
	}
	return nil
}

var errNotObject = errors.New("not a JSON object")

// decodeObject decodes one JSON object, rejecting other JSON values and
// trailing data.
func decodeObject(line []byte, v any) error {
	i := 0
	for i < len(line) && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r') {
		i++
	}
	if i == len(line) || line[i] != '{' {
		return errNotObject
	}
	return json.Unmarshal(line, v)
}
