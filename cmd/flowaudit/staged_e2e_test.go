package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil"
)

// TestStagedDenyEndToEnd: a staged deny on an edge the enforced rules
// allow gives staged_verdict = violation on exactly those flows, keeps
// their verdict allowed, and raises no alert; an enforced violation in
// the same run does alert (the detectors are working).
func TestStagedDenyEndToEnd(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	staged := strings.Replace(testPolicy, "    service_account: svc-orders\nrules:\n", `    service_account: svc-orders
    labels: {app: orders}
  - cidr: 10.1.0.5/32          # attributed, so unattributed_access stays quiet
    workload: shop
    service_account: svc-shop
rules:
  - name: staged-no-orders-db
    from: [web]
    to: [{segment: db, labels: {app: orders}}]
    ports: ["5432/tcp"]
    action: deny
    mode: staged
`, 1)
	policyPath := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(staged), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, ch, pipelineOptions{extraYAML: "policy:\n  file: " + policyPath + "\n"})
	p.Start()
	fs := newFlowSender(t, p.NetFlowAddr)
	fs.send("10.1.0.5", 51001, "10.2.0.10", 5432, 7) // allowed, staged violation
	fs.send("10.1.0.5", 51002, "10.2.0.11", 5432, 5) // allowed, staged allowed
	fs.send("10.1.0.6", 51003, "10.2.0.10", 22, 3)   // violation: alerts
	if got := waitFlows(t, ch, 15, 30*time.Second); got != 15 {
		t.Fatalf("rows = %d, want 15", got)
	}
	for _, c := range []struct {
		query string
		want  uint64
	}{
		{"SELECT toUInt64(count()) FROM flowaudit.flows WHERE staged_verdict = 'violation' AND verdict = 'allowed'", 7},
		{"SELECT toUInt64(count()) FROM flowaudit.flows WHERE staged_verdict = 'violation' AND staged_rule = 'staged-no-orders-db' AND dst_port = 5432 AND IPv6NumToString(dst_addr) = '::ffff:10.2.0.10'", 7},
		{"SELECT toUInt64(count()) FROM flowaudit.flows WHERE dst_port = 5432 AND verdict = 'allowed' AND rule = 'web-to-db-postgres'", 12},
		{"SELECT toUInt64(count()) FROM flowaudit.flows WHERE staged_verdict = 'allowed' AND staged_rule = 'web-to-db-postgres'", 5},
		{"SELECT toUInt64(count()) FROM flowaudit.flows WHERE verdict = 'violation' AND staged_verdict = 'violation' AND dst_port = 22", 3},
		{"SELECT toUInt64(sum(flows)) FROM flowaudit.segment_matrix_1m WHERE verdict = 'allowed' AND staged_verdict = 'violation'", 7},
		{"SELECT toUInt64(sum(flows)) FROM flowaudit.rule_hits_1h WHERE staged_rule = 'staged-no-orders-db' AND rule = 'web-to-db-postgres' AND dst_port = 5432", 7},
	} {
		if got := ch.QueryUint64(t, c.query); got != c.want {
			t.Errorf("%s = %d, want %d", c.query, got, c.want)
		}
	}
	// The enforced violation alerts; nothing alerts on port 5432.
	waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.alerts WHERE kind = 'policy_violation' AND dst_port = 22", 1, 30*time.Second)
	p.Stop()
	if got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.alerts WHERE dst_port = 5432"); got != 0 {
		t.Errorf("alerts on the staged edge = %d, want 0", got)
	}
}
