package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/report"
)

// TestReportSchedule: report.schedule inside run writes a pack per tick
// under report.dir, a reports row each, and announces each to the
// webhooks as a signed report event. The schedule is every two seconds
// (report.schedule takes an optional leading seconds field) so the test
// sees two packs quickly; a five-field "* * * * *" is every minute.
func TestReportSchedule(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	var mu sync.Mutex
	var events []report.Event
	badSig := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte("hook-secret"))
		mac.Write(body)
		var ev report.Event
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("X-Flowaudit-Signature") != hex.EncodeToString(mac.Sum(nil)) || r.Header.Get("X-Flowaudit-Event") != "report" {
			badSig++
		}
		if ev.Event == "report" {
			events = append(events, ev)
		}
	}))
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "reports")
	priv, pub := writeSigningKey(t)
	p := newPipeline(t, ch, pipelineOptions{extraYAML: fmt.Sprintf(`policy:
  file: %s
report:
  dir: %s
  schedule: "*/2 * * * * *"
  frameworks: [pci-dss-4]
  signing_key: %s
alerts:
  webhooks:
    - url: %s/hook
      secret: hook-secret
      min_severity: critical
`, reportFixturePolicy(t), dir, priv, srv.URL)})
	p.Start()
	conn := ch.Conn(t)
	var rows uint64
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		// The table exists once the sink has migrated.
		_ = conn.QueryRow(t.Context(), "SELECT toUInt64(count()) FROM flowaudit.reports").Scan(&rows)
		mu.Lock()
		n := len(events)
		mu.Unlock()
		if rows >= 2 && n >= 2 {
			break
		}
	}
	p.Stop()
	packs, _ := filepath.Glob(filepath.Join(dir, "pci-dss-4-*"))
	rows = ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.reports")
	mu.Lock()
	defer mu.Unlock()
	if len(packs) < 2 || rows != uint64(len(packs)) || len(events) != len(packs) || badSig != 0 {
		t.Fatalf("%d packs under report.dir, %d reports rows, %d report events (%d badly signed); want at least 2 of each, equal",
			len(packs), rows, len(events), badSig)
	}
	for _, ev := range events {
		v, err := report.Verify(ev.Path, mustPublicKey(t, pub))
		if err != nil || !v.OK() || v.Signature != "valid" {
			t.Errorf("pack %s of event %s: %+v %v", ev.Path, ev.ReportID, v, err)
		}
		var sha string
		if err := conn.QueryRow(t.Context(), "SELECT sha256 FROM flowaudit.reports WHERE report_id = ?", ev.ReportID).Scan(&sha); err != nil || sha != ev.ManifestSHA256 {
			t.Errorf("reports row of %s: sha256 %q (%v), the event says %q", ev.ReportID, sha, err, ev.ManifestSHA256)
		}
		if _, err := os.Stat(filepath.Join(ev.Path, "report.pdf")); err != nil {
			t.Errorf("pack %s: %v", ev.Path, err)
		}
	}
}

func mustPublicKey(t *testing.T, path string) []byte {
	t.Helper()
	k, err := report.LoadPublicKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
