package webhook

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultConfiguration(t *testing.T) {
	c := DefaultConfiguration()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if diff := cmp.Diff(c, Configuration{}); diff != "" {
		t.Errorf("DefaultConfiguration() (-got +want):\n%s", diff)
	}
	got := Endpoint{URL: "http://127.0.0.1:9/x"}.withDefaults()
	want := Endpoint{
		URL: "http://127.0.0.1:9/x", Format: "json", MinSeverity: "low",
		Timeout: 10 * time.Second, MaxAttempts: 8,
		InitialBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second,
		QueueSize: 1000,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("withDefaults() (-got +want):\n%s", diff)
	}
}

// TestDefaultsOutlastTenSecondOutage checks the defaults' promise: the
// shortest possible retry span (every jittered wait at its minimum) is
// well beyond a 10 s outage.
func TestDefaultsOutlastTenSecondOutage(t *testing.T) {
	e := Endpoint{}.withDefaults()
	var minSpan, maxSpan time.Duration
	b := e.InitialBackoff
	for attempt := 1; attempt < e.MaxAttempts; attempt++ {
		minSpan += b / 2
		maxSpan += b
		b = min(2*b, e.MaxBackoff)
	}
	if minSpan < 20*time.Second {
		t.Errorf("shortest retry span %s, want ≥ 20s to outlast a 10s outage", minSpan)
	}
	t.Logf("default retry span: %s to %s", minSpan, maxSpan)
}

func TestValidate(t *testing.T) {
	ok := func(mod func(*Endpoint)) Configuration {
		e := Endpoint{URL: "https://hooks.example/flowaudit"}
		mod(&e)
		return Configuration{Webhooks: []Endpoint{e}}
	}
	for _, tc := range []struct {
		name string
		cfg  Configuration
		want []string // substrings, one per error; nil means valid
	}{
		{"minimal", ok(func(*Endpoint) {}), nil},
		{"everything", ok(func(e *Endpoint) {
			e.Secret, e.Format, e.MinSeverity, e.Name = "s", "slack", "critical", "oncall"
			e.Timeout, e.MaxAttempts, e.InitialBackoff, e.MaxBackoff, e.QueueSize = time.Second, 3, time.Second, time.Minute, 10
			e.Headers = map[string]string{"Authorization": "Bearer x"}
		}), nil},
		{"missing url", ok(func(e *Endpoint) { e.URL = "" }), []string{"alerts.webhooks[0].url: required"}},
		{"bad scheme", ok(func(e *Endpoint) { e.URL = "ftp://x/y" }), []string{`alerts.webhooks[0].url: scheme "ftp" is not http or https`}},
		{"no host", ok(func(e *Endpoint) { e.URL = "http:///path" }), []string{"alerts.webhooks[0].url: no host"}},
		{"unparseable url hides user info", ok(func(e *Endpoint) { e.URL = "http://user:pw@%zz/x?token=t" }), []string{"alerts.webhooks[0].url: \"http://…@%zz/x\" is not a URL"}},
		{"format", ok(func(e *Endpoint) { e.Format = "xml" }), []string{`alerts.webhooks[0].format: "xml" is not json or slack`}},
		{"min_severity", ok(func(e *Endpoint) { e.MinSeverity = "urgent" }), []string{`alerts.webhooks[0].min_severity: "urgent" is not low, medium, high or critical`}},
		{"negatives", ok(func(e *Endpoint) {
			e.Timeout, e.MaxAttempts, e.QueueSize = -1, -1, -1
		}), []string{"alerts.webhooks[0].max_attempts:", "alerts.webhooks[0].queue_size:", "alerts.webhooks[0].timeout:"}},
		{"backoff order", ok(func(e *Endpoint) { e.InitialBackoff, e.MaxBackoff = time.Minute, time.Second }), []string{"alerts.webhooks[0].initial_backoff: 1m0s is above max_backoff 1s"}},
		{"reserved header", ok(func(e *Endpoint) { e.Headers = map[string]string{"x-flowaudit-signature": "forged"} }), []string{`alerts.webhooks[0].headers: "x-flowaudit-signature": set by flowaudit`}},
		{"invalid header", ok(func(e *Endpoint) { e.Headers = map[string]string{"Bad Header": "v"} }), []string{`alerts.webhooks[0].headers: "Bad Header": not a valid header name`}},
		{"second entry named", Configuration{Webhooks: []Endpoint{
			{URL: "http://a/x", Name: "a"}, {URL: "http://b/x", Name: "a", Format: "yaml"},
		}}, []string{`alerts.webhooks[1].format: "yaml"`, `alerts.webhooks[1].name: "a" is already the name of alerts.webhooks[0]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("Validate() = %d errors %q, want %d", len(lines), lines, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("error %d = %q, want prefix %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestEndpointLabel(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"https://hooks.example/flowaudit?token=secret#frag", "https://hooks.example/flowaudit"},
		{"https://user:pw@hooks.example:8443/a/b", "https://hooks.example:8443/a/b"},
		{"https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXXXXXXXXXX", "https://hooks.slack.com/services/T0001/B0001/***"},
		{"https://discord.com/api/webhooks/123456789012345678/aBcD-eFgH_iJkL0123456789", "https://discord.com/api/webhooks/***/***"},
		{"http://127.0.0.1:8080/flowaudit-alerts-receiver", "http://127.0.0.1:8080/flowaudit-alerts-receiver"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := endpointLabel(u); got != tc.want {
			t.Errorf("endpointLabel(%q) = %q, want %q", tc.url, got, tc.want)
		}
	}
}
