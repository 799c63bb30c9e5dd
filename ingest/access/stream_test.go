package access

import (
	"errors"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/ingest/access/parser"
)

// FuzzParseStreamDocument: a document of a k8s_pods stream on standard
// input either parses (a version, or one pod's bindings naming that pod)
// or fails with a typed parse error; it never panics.
func FuzzParseStreamDocument(f *testing.F) {
	pod := `{"kind":"Pod","metadata":{"name":"web-1","namespace":"prod","uid":"u1","labels":{"app":"web"}},"spec":{},"status":{"phase":"Running","podIP":"10.244.1.1"}}`
	for _, s := range []string{
		`{"kind":"List","items":[` + pod + `]}`, pod,
		`{"type":"MODIFIED","object":` + pod + `}`, `{"type":"DELETED","object":` + pod + `}`,
		`{"type":"ERROR","object":{"kind":"Status","code":410}}`, `{"kind":"Deployment"}`, `[]`, `"x"`, `{`,
	} {
		f.Add([]byte(s))
	}
	meta := parser.Meta{Received: time.Unix(1796173200, 0), Host: "h"}
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, pod, err := parseStreamDocument(parser.FormatK8sPods, data, meta)
		if err != nil {
			var pe *parser.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			if evs != nil || pod != nil {
				t.Fatalf("bindings beside an error: %v %v", evs, pod)
			}
			return
		}
		for i := range evs {
			if pod != nil && pod.UID != "" && evs[i].SessionID != pod.UID {
				t.Fatalf("binding of pod %q in the document of pod %q", evs[i].SessionID, pod.UID)
			}
		}
	})
}
