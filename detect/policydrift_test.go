package detect

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/detect/webhook"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/schemas"
)

func readScenarioPolicy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../deploy/scenario-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// withRule appends a rule to a policy file's rules (before default).
func withRule(t *testing.T, text, rule string) string {
	t.Helper()
	i := strings.LastIndex(text, "\ndefault:")
	if i < 0 {
		t.Fatal("policy has no default line")
	}
	return text[:i+1] + rule + text[i+1:]
}

func compileText(t *testing.T, text string) *policy.Matcher {
	t.Helper()
	p, err := policy.Parse([]byte(text), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const (
	sshIntoDB  = "  - name: web-ssh-db\n    from: [web]\n    to: [db]\n    ports: [\"22/tcp\"]\n"
	appToWeb   = "  - name: app-web-8443\n    from: [app]\n    to: [web]\n    ports: [\"8443/tcp\"]\n"
	mysqlIntoD = "  - name: web-mysql-db\n    from: [web]\n    to: [db]\n    ports: [\"3306/tcp\"]\n    identities: [alice]\n"
)

func TestPolicyDriftAlert(t *testing.T) {
	base := readScenarioPolicy(t)
	cfg := defaultPolicyDrift()
	cfg.Enabled = true
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	old := compileText(t, base).Policy()
	a, err := PolicyDriftAlert(old, compileText(t, withRule(t, base, sshIntoDB)).Policy(), "v1", "v2", cfg, now)
	if err != nil || a == nil {
		t.Fatalf("alert %v, err %v; want an alert for ssh into db", a, err)
	}
	if a.Kind != AlertPolicyDrift || a.Severity != schemas.SeverityHigh || a.SrcSegment != "web" || a.DstSegment != "db" ||
		a.DstPort != 22 || a.Proto != 6 || a.Count != 1 || !strings.Contains(a.Summary, "web -> db 22/tcp") {
		t.Errorf("alert %+v", a)
	}
	var ev struct {
		Version, Previous string
		Opened            []map[string]string
	}
	if err := json.Unmarshal([]byte(a.Evidence), &ev); err != nil || ev.Version != "v2" || ev.Previous != "v1" ||
		len(ev.Opened) != 1 || ev.Opened[0]["rules"] != "web-ssh-db" {
		t.Errorf("evidence %s (%v)", a.Evidence, err)
	}
	again, _ := PolicyDriftAlert(old, compileText(t, withRule(t, base, sshIntoDB)).Policy(), "v1", "v2", cfg, now.Add(time.Hour))
	if again.ID != a.ID {
		t.Errorf("the same reload gave ids %s and %s", a.ID, again.ID)
	}
	if a, err := PolicyDriftAlert(old, compileText(t, withRule(t, base, appToWeb)).Policy(), "v1", "v3", cfg, now); a != nil || err != nil {
		t.Errorf("opening app -> web raised %+v (%v); web is not sensitive", a, err)
	}
	if a, err := PolicyDriftAlert(old, old, "v1", "v1", cfg, now); a != nil || err != nil {
		t.Errorf("the same policy raised %+v (%v)", a, err)
	}
	cfg.Tags = []string{"public"}
	if a, _ := PolicyDriftAlert(old, compileText(t, withRule(t, base, sshIntoDB)).Policy(), "v1", "v2", cfg, now); a != nil {
		t.Errorf("tags [public]: db is not tagged so, got %+v", a)
	}
	bad := defaultPolicyDrift()
	bad.Severity = "urgent"
	if err := bad.validate(); err == nil || !strings.Contains(err.Error(), "detect.policy_drift.severity") {
		t.Errorf("validate severity urgent: %v", err)
	}
}

// TestPolicyDriftDetector runs the detect stage with policy_drift on and
// reloads the policy three times: ssh into db (alert), app -> web 8443
// (none), mysql into db for alice (alert). Exactly two policy_drift
// alerts reach a webhook, in order.
func TestPolicyDriftDetector(t *testing.T) {
	var mu sync.Mutex
	var got []webhook.JSONAlert
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var a webhook.JSONAlert
		if err := json.Unmarshal(body, &a); err == nil {
			mu.Lock()
			got = append(got, a)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	g := newHookRig(t, webhook.Configuration{Webhooks: []webhook.Endpoint{{URL: srv.URL + "/hook"}}})
	cfg := DefaultConfiguration()
	cfg.Baseline = false
	cfg.InstanceID = "policy-drift-test"
	cfg.PolicyDrift.Enabled = true
	base := readScenarioPolicy(t)
	c, err := New(newTestReporter(), cfg, Dependencies{Kafka: g.kcfg, Webhooks: g.hooks, Policy: compileText(t, base)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	v2 := withRule(t, base, sshIntoDB)
	c.ApplyPolicy(compileText(t, v2), []byte(v2))
	waitFor(t, time.Now().Add(20*time.Second), "the first policy_drift alert", func() bool { return count() >= 1 })
	v3 := withRule(t, v2, appToWeb)
	c.ApplyPolicy(compileText(t, v3), []byte(v3))
	v4 := withRule(t, v3, mysqlIntoD)
	c.ApplyPolicy(compileText(t, v4), []byte(v4))
	waitFor(t, time.Now().Add(20*time.Second), "the second policy_drift alert", func() bool { return count() >= 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d alerts, want 2: %+v", len(got), got)
	}
	for i, want := range []string{"web -> db 22/tcp", "web -> db 3306/tcp"} {
		if got[i].Kind != AlertPolicyDrift || !strings.Contains(got[i].Summary, want) {
			t.Errorf("alert %d: kind %s summary %q; want policy_drift naming %s", i, got[i].Kind, got[i].Summary, want)
		}
	}
}
