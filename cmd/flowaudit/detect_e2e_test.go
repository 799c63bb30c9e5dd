package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
)

// hookReceiver is a local webhook endpoint that verifies signatures and
// counts deliveries per alert id. It can be taken down and brought back
// on the same port.
type hookReceiver struct {
	t      *testing.T
	addr   string
	secret string
	mu     sync.Mutex
	got    map[string]int // alert id -> deliveries
	kinds  map[string]string
	badSig int
	srv    *http.Server
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{t: t, secret: secret, got: map[string]int{}, kinds: map[string]string{}}
	h.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	h.up()
	t.Cleanup(h.down)
	return h
}

func (h *hookReceiver) up() {
	ln, err := net.Listen("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(h.secret))
		mac.Write(body)
		var a struct {
			ID   string `json:"alert_id"`
			Kind string `json:"kind"`
		}
		_ = json.Unmarshal(body, &a)
		h.mu.Lock()
		defer h.mu.Unlock()
		if r.Header.Get("X-Flowaudit-Signature") != hex.EncodeToString(mac.Sum(nil)) {
			h.badSig++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if a.ID == "" {
			a.ID = r.Header.Get("X-Flowaudit-Alert-Id")
		}
		h.got[a.ID]++
		h.kinds[a.ID] = a.Kind
	})}
	go h.srv.Serve(ln)
}

func (h *hookReceiver) down() {
	if h.srv != nil {
		h.srv.Close()
		h.srv = nil
	}
}

func (h *hookReceiver) deliveries() (ids, total, dup int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.got {
		total += n
		if n > 1 {
			dup++
		}
	}
	return len(h.got), total, dup
}

// alertsByKind reads each alert once (FINAL) and counts per kind.
func alertsByKind(t *testing.T, ch *testutil.ClickHouseServer) map[string]int {
	t.Helper()
	rows, err := ch.Conn(t).Query(context.Background(), "SELECT kind, toUInt64(count()) FROM flowaudit.alerts FINAL GROUP BY kind")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n uint64
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = int(n)
	}
	return out
}

// TestScenarioDetection replays the labelled scenario — normal traffic
// plus one instance of each attack — through "flowaudit run" and prints
// precision and recall per detector. Every attack must raise its alert;
// normal traffic must raise none of policy_violation, address_scan,
// port_scan and volume_spike. Alerts also reach a signed webhook.
func TestScenarioDetection(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	hook := newHookReceiver(t, "hook-secret")
	wd, _ := os.Getwd()
	policyPath := filepath.Join(wd, "..", "..", "deploy", "scenario-policy.yaml")
	p := newPipeline(t, ch, pipelineOptions{extraYAML: fmt.Sprintf(`policy:
  file: %s
detect:
  checkpoint_interval: 1s
  new_edge:
    learning: 10m          # the scenario's learning period
  volume_spike:
    sustain: 1             # the scenario's spike lasts one minute
    min_bytes: 1000000
alerts:
  webhooks:
    - url: http://%s/hook
      secret: hook-secret
      min_severity: low
`, policyPath, hook.addr)})
	p.Start()
	sc := simulate.NewScenario(simulate.ScenarioConfig{Seed: 7, Start: time.Now()})
	tot, err := simulate.RunScenario(context.Background(), sc, p.NetFlowAddr, p.SyslogUDP, 0)
	if err != nil {
		t.Fatalf("scenario: %v", err)
	}
	t.Logf("scenario sent %d flows, %d log lines", tot.Flows, tot.Lines)
	if got := waitFlows(t, ch, tot.Flows, 90*time.Second); got != tot.Flows {
		t.Errorf("flows in ClickHouse = %d, want %d", got, tot.Flows)
	}
	// Let the last windows close and the alerts land.
	var got map[string]int
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		got = alertsByKind(t, ch)
		done := true
		for kind, n := range sc.Expected {
			if got[kind] < n {
				done = false
			}
		}
		if done {
			break
		}
	}
	kinds := make([]string, 0, len(sc.Expected))
	for k := range sc.Expected {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	t.Logf("%-20s %8s %8s %9s %7s", "detector", "expected", "raised", "precision", "recall")
	for _, k := range kinds {
		want, raised := sc.Expected[k], got[k]
		tp := min(want, raised)
		precision, recall := 1.0, 1.0
		if raised > 0 {
			precision = float64(tp) / float64(raised)
		}
		if want > 0 {
			recall = float64(tp) / float64(want)
		}
		t.Logf("%-20s %8d %8d %9.2f %7.2f", k, want, raised, precision, recall)
		if recall < 1 {
			t.Errorf("%s: injected %d, raised %d: an attack went unnoticed", k, want, raised)
		}
	}
	for _, k := range []string{"policy_violation", "address_scan", "port_scan", "volume_spike"} {
		if got[k] > sc.Expected[k] {
			t.Errorf("%s: %d alerts for %d injected: normal traffic raised %s", k, got[k], sc.Expected[k], k)
		}
	}
	// Webhook: every alert delivered once, with a valid signature.
	total := 0
	for _, n := range got {
		total += n
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if ids, _, _ := hook.deliveries(); ids >= total {
			break
		}
	}
	ids, deliveries, dup := hook.deliveries()
	if ids != total || dup != 0 || hook.badSig != 0 {
		t.Errorf("webhook got %d alerts in %d deliveries (%d duplicated, %d bad signatures); ClickHouse has %d", ids, deliveries, dup, hook.badSig, total)
	}
}
