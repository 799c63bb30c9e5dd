package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/simulate"
	"github.com/flowaudit/flowaudit/internal/testutil"
)

// scenarioDetectYAML sizes the detectors to the labelled scenario.
const scenarioDetectYAML = `detect:
  checkpoint_interval: 1s
  new_edge:
    learning: 10m
  volume_spike:
    sustain: 1
    min_bytes: 1000000
`

func scenarioPolicyPath(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(wd, "..", "..", "deploy", "scenario-policy.yaml")
}

// splitScenario cuts sc at event offset at; the second part's pacing
// starts at its first event.
func splitScenario(sc *simulate.Scenario, at time.Duration) (*simulate.Scenario, *simulate.Scenario) {
	first, second := *sc, *sc
	first.Events, second.Events = nil, nil
	for _, e := range sc.Events {
		if e.At < at {
			first.Events = append(first.Events, e)
		} else {
			e.At -= at
			second.Events = append(second.Events, e)
		}
	}
	return &first, &second
}

func alertIDs(t *testing.T, ch *testutil.ClickHouseServer) []string {
	t.Helper()
	rows, err := ch.Conn(t).Query(context.Background(), "SELECT alert_id, kind FROM flowaudit.alerts FINAL ORDER BY alert_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, kind string
		if err := rows.Scan(&id, &kind); err != nil {
			t.Fatal(err)
		}
		out = append(out, kind+" "+id)
	}
	return out
}

func waitAlerts(t *testing.T, ch *testutil.ClickHouseServer, want map[string]int, timeout time.Duration) map[string]int {
	t.Helper()
	var got map[string]int
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		got = alertsByKind(t, ch)
		done := true
		for kind, n := range want {
			if got[kind] < n {
				done = false
			}
		}
		if done {
			time.Sleep(2 * time.Second) // let stragglers (duplicates) land too
			return alertsByKind(t, ch)
		}
	}
	return got
}

// TestDetectRestartAndWebhookOutage stops "flowaudit run" in the middle
// of the attacks' windows and takes the webhook receiver down for 10 s:
// after both come back, every attack has exactly its alerts, and the
// receiver got each alert exactly once.
func TestDetectRestartAndWebhookOutage(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	hook := newHookReceiver(t, "s3cret")
	p := newPipeline(t, ch, pipelineOptions{extraYAML: fmt.Sprintf(`policy:
  file: %s
%salerts:
  webhooks:
    - url: http://%s/hook
      secret: s3cret
`, scenarioPolicyPath(t), scenarioDetectYAML, hook.addr)})
	p.Start()
	sc := simulate.NewScenario(simulate.ScenarioConfig{Seed: 11, Start: time.Now()})
	first, second := splitScenario(sc, 13*time.Minute+30*time.Second)

	// The receiver goes down as the first attacks land and comes back
	// 10 s later, after the restart.
	down := time.AfterFunc(10*time.Second, hook.down)
	defer down.Stop()
	up := time.AfterFunc(20*time.Second, hook.up)
	defer up.Stop()
	if _, err := simulate.RunScenario(context.Background(), first, p.NetFlowAddr, p.SyslogUDP, 0); err != nil {
		t.Fatal(err)
	}
	p.Stop() // mid-window: scans, brute force and the chain are half done
	p.Start()
	if _, err := simulate.RunScenario(context.Background(), second, p.NetFlowAddr, p.SyslogUDP, 0); err != nil {
		t.Fatal(err)
	}
	got := waitAlerts(t, ch, sc.Expected, 90*time.Second)
	if diff := cmp.Diff(got, sc.Expected); diff != "" {
		t.Errorf("alerts per kind after a restart mid-window (-got +want):\n%s", diff)
	}
	total := 0
	for _, n := range got {
		total += n
	}
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if ids, _, _ := hook.deliveries(); ids >= total {
			break
		}
	}
	time.Sleep(time.Second)
	ids, deliveries, dup := hook.deliveries()
	if ids != total || deliveries != total || dup != 0 || hook.badSig != 0 {
		t.Errorf("webhook: %d alerts in %d deliveries (%d duplicated, %d bad signatures); want each of %d once", ids, deliveries, dup, hook.badSig, total)
	}
	if n := p.Metric("flowaudit_webhook_undelivered_total"); n != 0 {
		t.Errorf("undelivered webhooks = %v, want 0", n)
	}
}

// TestTwoDetectorsMatchOne replays the same scenario (same event times)
// through one "flowaudit run" and through separate processes with two
// detect processes in one consumer group: the alert sets are identical.
func TestTwoDetectorsMatchOne(t *testing.T) {
	start := time.Now().Truncate(10 * time.Minute).Add(20 * time.Minute)
	sc := simulate.NewScenario(simulate.ScenarioConfig{Seed: 5, Start: start})
	policyPath := scenarioPolicyPath(t)

	// One process.
	ch1 := testutil.StartClickHouse(t)
	p := newPipeline(t, ch1, pipelineOptions{extraYAML: "policy:\n  file: " + policyPath + "\n" + scenarioDetectYAML})
	p.Start()
	if _, err := simulate.RunScenario(context.Background(), sc, p.NetFlowAddr, p.SyslogUDP, 0); err != nil {
		t.Fatal(err)
	}
	waitAlerts(t, ch1, sc.Expected, 90*time.Second)
	one := alertIDs(t, ch1)
	p.Stop()

	// Separate stages, two detectors.
	ch2 := testutil.StartClickHouse(t)
	c := newCluster(t, ch2, "policy:\n  file: "+policyPath+"\n"+scenarioDetectYAML)
	c.start("broker", "broker")
	for _, n := range []string{"collect", "enrich", "sink"} {
		c.start(n, n)
	}
	c.start("detect1", "detect")
	c.start("detect2", "detect")
	time.Sleep(3 * time.Second) // both detectors in the group before traffic
	if _, err := simulate.RunScenario(context.Background(), sc, c.NetFlow, c.Syslog, 0); err != nil {
		t.Fatal(err)
	}
	waitAlerts(t, ch2, sc.Expected, 90*time.Second)
	two := alertIDs(t, ch2)
	sort.Strings(one)
	sort.Strings(two)
	if diff := cmp.Diff(two, one); diff != "" {
		t.Errorf("alerts of two detectors (-got) vs one (+want):\n%s", diff)
	}
	if len(one) == 0 {
		t.Error("no alerts at all")
	}
}
