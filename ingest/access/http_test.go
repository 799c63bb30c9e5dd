package access_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/ingest/access"
	"github.com/flowaudit/flowaudit/schemas"
)

type httpResult struct {
	code int
	resp access.IntakeResponse
}

func post(t *testing.T, url, token, contentType, body string) httpResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out httpResult
	out.code = res.StatusCode
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("POST %s: Content-Type %q, want application/json", url, ct)
	}
	if err := json.Unmarshal(data, &out.resp); err != nil {
		t.Fatalf("POST %s: %d with a body that is not JSON: %q", url, res.StatusCode, data)
	}
	return out
}

func TestHTTPIntake(t *testing.T) {
	h := newHarness(t)
	cfg := testConfiguration()
	cfg.SyslogListen = nil
	cfg.HTTPTokens = []string{"other-token", "s3cret"}
	cfg.HTTPMaxBody = 4096
	c := h.start(cfg)
	base := "http://" + c.HTTPAddr()
	url := base + "/v1/access"

	ndjson := `{"time":"2024-03-10T11:59:58Z","source":"vpn","host":"vpn-1","user":"alice","src_addr":"203.0.113.7","src_port":51234,"dst_addr":"10.2.0.10","dst_host":"orders-db","dst_port":5432,"resource":"orders","action":"login","outcome":"success","session_id":"s-1","auth_method":"password"}` + "\n" +
		`{"user":"bob","src_addr":"2001:db8::5","action":"login","outcome":"failure"}` + "\r\n\n"

	// Without a token, and with a wrong one: 401, nothing produced.
	for _, token := range []string{"", "s3cret-not", "s3cre"} {
		got := post(t, url, token, "application/x-ndjson", ndjson)
		if got.code != http.StatusUnauthorized || got.resp.Error == "" || got.resp.Accepted != 0 {
			t.Errorf("token %q: %d %+v, want 401 with an error", token, got.code, got.resp)
		}
	}

	steps := []struct {
		name, query, body string
		wantCode          int
		wantResp          access.IntakeResponse
		wantUsers         []string
	}{
		{"ndjson", "", ndjson, 200, access.IntakeResponse{Accepted: 2}, []string{"alice", "bob"}},
		{"json array", "", ` [{"user":"carol","src_addr":"10.0.0.3","action":"login","outcome":"success"},
			{"user":"dave","src_addr":"10.0.0.4","action":"login","outcome":"denied"}]`, 200, access.IntakeResponse{Accepted: 2}, []string{"carol", "dave"}},
		{"nginx lines", "?format=nginx",
			`203.0.113.5 - erin [10/Oct/2024:13:55:36 +0000] "GET /admin HTTP/1.1" 403 153 "-" "curl/8.0"` + "\n" +
				`203.0.113.6 - frank [10/Oct/2024:13:55:37 +0000] "POST /login HTTP/1.1" 200 12 "-" "Mozilla/5.0"` + "\n",
			200, access.IntakeResponse{Accepted: 2}, []string{"erin", "frank"}},
		{"mixed", "", `{"user":"grace","action":"login"}` + "\n" + `{"user":` + "\n" + `{"note":"no access fields"}`, 200,
			access.IntakeResponse{Accepted: 1, Rejected: 2, Errors: []access.IntakeError{{Line: 2, Reason: "bad_json"}, {Line: 3, Reason: "missing_field"}}},
			[]string{"grace"}},
		{"all bad", "?format=sshd", "hello\nworld\n", 400,
			access.IntakeResponse{Rejected: 2, Errors: []access.IntakeError{{Line: 1, Reason: "no_match"}, {Line: 2, Reason: "no_match"}}, Error: "no line was accepted"},
			nil},
	}
	wantEvents, wantDead := 0, 0
	var wantUsers []string
	for _, s := range steps {
		got := post(t, url+s.query, "s3cret", "application/x-ndjson", s.body)
		for i := range got.resp.Errors {
			if got.resp.Errors[i].Error == "" {
				t.Errorf("%s: error %d has no text", s.name, i)
			}
			got.resp.Errors[i].Error = ""
		}
		if got.code != s.wantCode {
			t.Errorf("%s: status %d, want %d (%+v)", s.name, got.code, s.wantCode, got.resp)
		}
		if diff := cmp.Diff(got.resp, s.wantResp); diff != "" {
			t.Errorf("%s: response (-got +want):\n%s", s.name, diff)
		}
		// 2xx means acknowledged: the events are on the topic now.
		wantEvents += s.wantResp.Accepted
		wantDead += s.wantResp.Rejected
		wantUsers = append(wantUsers, s.wantUsers...)
	}
	h.wait(wantEvents, wantDead)
	h.settle()
	if diff := cmp.Diff(users(h.events), wantUsers); diff != "" {
		t.Errorf("users on the topic (-got +want):\n%s", diff)
	}
	want := schemas.AccessEvent{
		Time: uint64(time.Date(2024, 3, 10, 11, 59, 58, 0, time.UTC).UnixNano()), Source: "vpn", Host: "vpn-1",
		User: "alice", SrcAddr: addr("203.0.113.7"), SrcPort: 51234, DstAddr: addr("10.2.0.10"), DstPort: 5432,
		DstHost: "orders-db", Resource: "orders", Action: "login", Outcome: schemas.OutcomeSuccess,
		SessionID: "s-1", AuthMethod: "password",
		PeerAddr: addr("127.0.0.1"), Listener: "http://" + h.c.HTTPAddr(),
	}
	if diff := cmp.Diff(checkReceived(t, h.events[:1])[0], want); diff != "" {
		t.Errorf("generic schema event (-got +want):\n%s", diff)
	}
	if erin := h.events[4]; erin.Source != "nginx" || erin.Outcome != schemas.OutcomeDenied || erin.Resource != "/admin" || erin.Status != 403 {
		t.Errorf("nginx event = %+v, want source nginx, denied, /admin, 403", erin)
	}
	for _, dl := range h.dead {
		if !strings.HasPrefix(dl.Source, "http://127.0.0.1:") || !strings.Contains(dl.Source, " from 127.0.0.1:") {
			t.Errorf("dead letter source %q, want the listener and the peer", dl.Source)
		}
	}

	// Oversize bodies: announced, and streamed without a length.
	big := strings.Repeat(`{"user":"zed","action":"login"}`+"\n", 200)
	if got := post(t, url, "s3cret", "application/x-ndjson", big); got.code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize body: %d %+v, want 413", got.code, got.resp)
	}
	// Streamed, the body is decoded as it arrives: the lines before the
	// cut are taken, and the answer says how many.
	req, _ := http.NewRequest(http.MethodPost, url, io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", "Bearer s3cret")
	req.ContentLength = -1
	if res, err := http.DefaultClient.Do(req); err != nil {
		t.Errorf("chunked oversize body: %v", err)
	} else {
		var resp access.IntakeResponse
		_ = json.NewDecoder(res.Body).Decode(&resp)
		res.Body.Close()
		// 4096 bytes hold 128 whole lines of 32 bytes.
		if res.StatusCode != http.StatusRequestEntityTooLarge || resp.Accepted != 128 || resp.Error == "" {
			t.Errorf("chunked oversize body: %d %+v, want 413 with the 128 lines before the cut accepted", res.StatusCode, resp)
		}
		wantEvents += resp.Accepted
	}
	if got := post(t, url+"?format=csv", "s3cret", "text/plain", "a,b\n"); got.code != http.StatusBadRequest {
		t.Errorf("unknown format: %d, want 400", got.code)
	}

	// Health needs no token; GET on the intake is refused.
	res, err := http.Get(base + "/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/health: %d, want 200", res.StatusCode)
	}
	res, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/access: %d, want 405", res.StatusCode)
	}
	waitMetric(t, h.r, "flowaudit_access_http_requests_total", map[string]string{"code": "401"}, 3)
	if got := metricValue(t, h.r, "flowaudit_access_http_requests_total", map[string]string{"code": "413"}); got != 2 {
		t.Errorf("413 responses counted %v, want 2", got)
	}
	if got := metricValue(t, h.r, "flowaudit_access_produced_total", nil); got != float64(wantEvents) {
		t.Errorf("flowaudit_access_produced_total = %v, want %d", got, wantEvents)
	}
}

// TestHTTPIntakeCurl posts with curl, a client nobody here wrote.
func TestHTTPIntakeCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	h := newHarness(t)
	cfg := testConfiguration()
	cfg.SyslogListen = nil
	cfg.HTTPTokens = []string{"s3cret"}
	c := h.start(cfg)
	url := "http://" + c.HTTPAddr() + "/v1/access"
	body := `{"user":"alice","src_addr":"10.1.2.3","action":"login","outcome":"success"}` + "\n" +
		`{"user":"bob","src_addr":"10.1.2.4","action":"login","outcome":"failure"}` + "\n"
	run := func(args ...string) (string, string) {
		t.Helper()
		args = append([]string{"-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Type: application/x-ndjson", "--data-binary", "@-"}, args...)
		cmd := exec.Command(curl, append(args, url)...)
		cmd.Stdin = strings.NewReader(body)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl: %v", err)
		}
		text := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(text, '\n')
		return text[:i], text[i+1:]
	}
	if _, code := run(); code != "401" {
		t.Errorf("curl without token: %s, want 401", code)
	}
	respBody, code := run("-H", "Authorization: Bearer s3cret")
	if code != "200" {
		t.Fatalf("curl with token: %s %s, want 200", code, respBody)
	}
	var resp access.IntakeResponse
	if err := json.Unmarshal([]byte(respBody), &resp); err != nil || resp.Accepted != 2 {
		t.Errorf("curl response %q, want accepted 2", respBody)
	}
	h.wait(2, 0)
	if diff := cmp.Diff(users(h.events), []string{"alice", "bob"}); diff != "" {
		t.Errorf("users (-got +want):\n%s", diff)
	}
}
