package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/internal/simulate"
)

// identityScenarioPolicy is the scenario policy with an identity-scoped
// rule first: admin ssh only for the admin VPN's service account (which
// the scenario's normal ssh uses) and the on-call DBA (who never logs in:
// a dormant entitlement).
func identityScenarioPolicy(t *testing.T) string {
	data, err := os.ReadFile(scenarioPolicyPath(t))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "\nrules:\n", `
rules:
  - name: admin-vpn-ssh
    from: [external]
    to: [web, app, db]
    ports: ["22/tcp"]
    identities: [admin-vpn, dba-oncall]
`, 1)
	path := filepath.Join(t.TempDir(), "identity-policy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAuditIdentitiesScenario is the acceptance test of audit identities
// on the labelled scenario: mallory (the lateral-movement identity)
// appears with the three segments web, app and db and the two rules of
// the chain; the CSV has exactly one row per identity × destination ×
// service, as an independent ClickHouse query counts them; the unused
// identity of the fixture rule is a dormant entitlement; the unattributed
// flows into db are the scenario's unattributed_access attack.
func TestAuditIdentitiesScenario(t *testing.T) {
	a := runAuditScenario(t, identityScenarioPolicy(t), simulate.ScenarioConfig{Seed: 5, Start: time.Now()}, 0, false)

	res := a.run(t, "audit", "identities", "--format", "json")
	var rev audit.IdentityReview
	if err := json.Unmarshal([]byte(res.stdout), &rev); err != nil {
		t.Fatalf("identities JSON: %v\n%s", err, res.stdout)
	}
	t.Logf("summary %+v, unattributed %d of %d", rev.Summary, rev.Unattributed.Flows, rev.Unattributed.TotalFlows)
	var mallory *audit.IdentityProfile
	for i := range rev.Profiles {
		if rev.Profiles[i].Identity == "mallory" {
			mallory = &rev.Profiles[i]
		}
	}
	if mallory == nil {
		t.Fatalf("no profile for mallory:\n%s", res.stdout)
	}
	if d := cmp.Diff(mallory.Segments, []string{"app", "db", "web"}); d != "" {
		t.Errorf("mallory's segments (-got +want):\n%s", d)
	}
	if d := cmp.Diff(mallory.Rules, []string{"app-to-db", "web-to-app"}); d != "" {
		t.Errorf("mallory's rules (-got +want):\n%s", d)
	}
	// Her flows: web -> app 8080 and app -> db 5432, 3 flows each; her two
	// sshd logins (hosts web-1 and app-1) are access rows of their own.
	type hop struct {
		seg, port, rule string
		flows, events   uint64
	}
	var hops []hop
	for _, r := range rev.Identities {
		if r.Identity == "mallory" {
			hops = append(hops, hop{r.DstSegment + "/" + r.DstWorkload, fmt.Sprintf("%d/%d", r.DstPort, r.Proto), r.Rule, r.Flows, r.AccessEvents})
		}
	}
	wantHops := []hop{{"/app-1", "22/6", "", 0, 1}, {"/web-1", "22/6", "", 0, 1},
		{"app/app-tier", "8080/6", "web-to-app", 3, 0}, {"db/db-tier", "5432/6", "app-to-db", 3, 0}}
	if d := cmp.Diff(hops, wantHops, cmp.AllowUnexported(hop{})); d != "" {
		t.Errorf("mallory's destinations (-got +want):\n%s", d)
	}

	// Dormant: dba-oncall never used admin-vpn-ssh; admin-vpn did.
	var dormant []string
	for _, d := range rev.Dormant {
		dormant = append(dormant, d.Identity+"|"+d.Rule)
	}
	if d := cmp.Diff(dormant, []string{"dba-oncall|admin-vpn-ssh"}); d != "" {
		t.Errorf("dormant entitlements (-got +want):\n%s", d)
	}

	// Unattributed into db, counted independently on the stored columns
	// (replies count for the connection they answer).
	unattr := a.ch.QueryUint64(t, `SELECT toUInt64(count()) FROM flowaudit.flows
WHERE (service_side != 'src' AND dst_segment = 'db' AND src_segment != 'db' AND src_identity = '')
   OR (service_side = 'src' AND src_segment = 'db' AND dst_segment != 'db' AND dst_identity = '')`)
	total := a.ch.QueryUint64(t, `SELECT toUInt64(count()) FROM flowaudit.flows
WHERE (service_side != 'src' AND dst_segment = 'db' AND src_segment != 'db')
   OR (service_side = 'src' AND src_segment = 'db' AND dst_segment != 'db')`)
	u := rev.Unattributed
	if u.Flows != unattr || u.TotalFlows != total || u.Flows == 0 {
		t.Errorf("unattributed into sensitive segments: %d of %d flows; ClickHouse counts %d of %d (want > 0)", u.Flows, u.TotalFlows, unattr, total)
	}
	if len(u.BySegment) != 1 || len(u.BySegment[0].Sources) != 1 || u.BySegment[0].Sources[0].Value != "192.0.2.66" {
		t.Errorf("unattributed sources: %+v, want only the attack's 192.0.2.66", u.BySegment)
	}

	// CSV: parses, one row per identity × destination × service, and as
	// many rows as ClickHouse counts distinct keys: flows with an identity
	// (replies folded) plus access destinations (the scenario's logins name
	// no address, so their host is the destination).
	cres := a.run(t, "audit", "identities", "--format", "csv")
	recs, err := csv.NewReader(strings.NewReader(cres.stdout)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, cres.stdout)
	}
	if d := cmp.Diff(recs[0], audit.IdentityCSVHeader); d != "" {
		t.Fatalf("CSV header (-got +want):\n%s", d)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	keys := map[string]bool{}
	for _, r := range recs[1:] {
		k := strings.Join([]string{r[col["identity"]], r[col["dst_segment"]], r[col["dst_workload"]], r[col["dst_port"]], r[col["proto"]]}, "|")
		if keys[k] {
			t.Errorf("CSV row %s twice", k)
		}
		keys[k] = true
		if r[col["reviewer"]] != "" || r[col["acknowledged"]] != "" || r[col["review_notes"]] != "" {
			t.Errorf("CSV review columns filled: %v", r)
		}
	}
	want := a.ch.QueryUint64(t, `SELECT toUInt64(count()) FROM
(
    SELECT DISTINCT
        if(service_side = 'src', dst_identity, src_identity) AS id,
        if(service_side = 'src', src_segment, dst_segment) AS seg,
        if(service_side = 'src', src_workload, dst_workload) AS wl,
        if(proto IN (1, 58), 0, if(service_side = 'src', src_port, dst_port)) AS port,
        proto
    FROM flowaudit.flows
    WHERE id != ''
    UNION ALL
    SELECT DISTINCT user AS id, '' AS seg, host AS wl, toUInt16(22) AS port, toUInt8(6) AS proto
    FROM flowaudit.access_events
    WHERE outcome = 'success' AND trusted = 1 AND user != '' AND action NOT IN ('logout', 'session_close', 'disconnect')
)`)
	if got := uint64(len(recs) - 1); got != want || got != uint64(len(rev.Identities)) {
		t.Errorf("CSV has %d rows, JSON %d; ClickHouse counts %d identity × destination × service keys", got, len(rev.Identities), want)
	}
	t.Logf("CSV rows %d = ClickHouse distinct keys %d; %d identities", len(recs)-1, want, rev.Summary.Identities)

	// The table is the default and names mallory's segments; --fail-on
	// dormant exits 1, --identity narrows the review.
	tres := a.run(t, "audit", "identities")
	if !strings.Contains(tres.stdout, "mallory") || !strings.Contains(tres.stdout, "app,db,web") || !strings.Contains(tres.stdout, "dba-oncall") {
		t.Errorf("table lacks mallory's segments or the dormant entitlement:\n%s", tres.stdout)
	}
	args := []string{"audit", "identities", "--config", a.cfgPath, "--since", "1d", "--until", a.until, "--fail-on", "dormant"}
	if r := runCLI(t, args...); r.code != 1 {
		t.Errorf("--fail-on dormant: exit %d, want 1\n%s", r.code, r.stderr)
	}
	one := a.run(t, "audit", "identities", "--identity", "mallory", "--format", "json")
	var only audit.IdentityReview
	if err := json.Unmarshal([]byte(one.stdout), &only); err != nil {
		t.Fatal(err)
	}
	if len(only.Profiles) != 1 || len(only.Identities) != len(wantHops) {
		t.Errorf("--identity mallory: %d profiles, %d rows; want 1 and %d", len(only.Profiles), len(only.Identities), len(wantHops))
	}
}

// TestAuditIdentitiesRuntimeError: an unreachable ClickHouse is a runtime
// error, exit 2, naming what failed.
func TestAuditIdentitiesRuntimeError(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "flowaudit.yaml")
	if err := os.WriteFile(cfg, []byte("clickhouse:\n  addr: 127.0.0.1:1\npolicy:\n  file: "+scenarioPolicyPath(t)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, "audit", "identities", "--config", cfg, "--since", "1d")
	if res.code != 2 || !strings.Contains(res.stderr, "flowaudit audit identities:") {
		t.Errorf("unreachable ClickHouse: exit %d, stderr %q; want 2 naming the command", res.code, res.stderr)
	}
}
