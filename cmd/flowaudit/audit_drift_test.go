package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
	"github.com/flowaudit/flowaudit/sink"
)

// driftFixture is a ClickHouse holding three policy versions, inserted as
// the sink writes flowaudit.policy.v1 (one batch of its columns), and
// flows of two days; it returns the config file and the window's end.
func driftFixture(t *testing.T) (cfg string, until time.Time, versions []string) {
	t.Helper()
	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	ctx := context.Background()
	if _, err := sink.Migrate(ctx, conn, "flowaudit", 0, nil); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile("../../deploy/scenario-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v1 := string(base)
	v2 := strings.Replace(v1, `ports: ["8080/tcp"]`, `ports: ["8080/tcp", "8443/tcp"]`, 1) // opens web -> app 8443
	if v2 == v1 {
		t.Fatal("scenario policy has no 8080/tcp rule")
	}
	strict, err := os.ReadFile("../../deploy/demo-draft-strict.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v3 := string(strict) // closes 8443 again, web -> db postgres, and ssh for all but admin-vpn
	until = time.Now().UTC().Truncate(time.Hour)
	app := func(content string, at time.Duration, host string) schemas.PolicyVersion {
		return schemas.PolicyVersion{Version: schemas.PolicyVersionOf([]byte(content)), LoadedAt: uint64(until.Add(-at).UnixNano()),
			Path: "/etc/flowaudit/policy.yaml", Content: []byte(content), Host: host, Summary: "v"}
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO flowaudit.policy_versions (version, loaded_at, path, content, host, summary)")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []schemas.PolicyVersion{
		app(v1, 40*24*time.Hour, "enricher-1"), // before the window: in force at its start
		app(v2, 10*24*time.Hour, "enricher-1"),
		app(v2, 9*24*time.Hour, "enricher-2"), // a second enricher applies it: no change
		app(v3, 30*time.Hour, "enricher-1"),
	} {
		if err := batch.Append(v.Version, time.Unix(0, int64(v.LoadedAt)), v.Path, string(v.Content), v.Host, v.Summary); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	// web -> app 8080 since before v3 (not new); web -> db 22 as mallory
	// (a violation) first after v3, on two days.
	var rows []string
	flow := func(at time.Duration, src, dst, srcSeg, dstSeg string, port uint16, id, verdict, rule string) {
		rows = append(rows, fmt.Sprintf(`SELECT toDateTime(%d) AS time_received, IPv6StringToNum('::ffff:%s') AS src_addr, IPv6StringToNum('::ffff:%s') AS dst_addr,
  toUInt16(40000) AS src_port, toUInt16(%d) AS dst_port, toUInt16(%d) AS service_port, toUInt8(6) AS proto, toUInt64(1000) AS bytes,
  '%s' AS src_segment, '%s' AS dst_segment, '%s' AS src_identity, '%s' AS verdict, '%s' AS rule, 'dst' AS service_side`,
			until.Add(-at).Unix(), src, dst, port, port, srcSeg, dstSeg, id, verdict, rule))
	}
	flow(5*24*time.Hour, "10.1.0.10", "10.3.0.10", "web", "app", 8080, "svc-web", "allowed", "web-to-app")
	flow(2*time.Hour, "10.1.0.10", "10.3.0.10", "web", "app", 8080, "svc-web", "allowed", "web-to-app")
	flow(26*time.Hour, "10.1.0.66", "10.2.0.10", "web", "db", 22, "mallory", "violation", "")
	flow(25*time.Hour, "10.1.0.66", "10.2.0.11", "web", "db", 22, "mallory", "violation", "")
	flow(3*time.Hour, "10.1.0.66", "10.2.0.12", "web", "db", 22, "mallory", "violation", "")
	q := `INSERT INTO flowaudit.flows (time_received, src_addr, dst_addr, src_port, dst_port, service_port, proto, bytes,
  src_segment, dst_segment, src_identity, verdict, rule, service_side) ` + strings.Join(rows, " UNION ALL ")
	if err := conn.Exec(ctx, q); err != nil {
		t.Fatalf("insert flows: %v", err)
	}
	cfg = filepath.Join(t.TempDir(), "flowaudit.yaml")
	if err := os.WriteFile(cfg, []byte("clickhouse:\n  addr: "+ch.Addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, until, []string{schemas.PolicyVersionOf([]byte(v1)), schemas.PolicyVersionOf([]byte(v2)), schemas.PolicyVersionOf([]byte(v3))}
}

func TestAuditDrift(t *testing.T) {
	cfg, until, vs := driftFixture(t)
	args := []string{"audit", "drift", "--config", cfg, "--since", "30d", "--until", until.Format(time.RFC3339)}
	res := runCLI(t, append(args, "--format", "json")...)
	if res.code != 0 {
		t.Fatalf("audit drift --format json: exit %d\n%s", res.code, res.stderr)
	}
	var d audit.Drift
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil {
		t.Fatalf("output is not a drift: %v\n%s", err, res.stdout)
	}
	type ver struct {
		Version, Previous string
		Applications      int
		Opened, Closed    int
		Changes           []string
	}
	var got []ver
	for _, v := range d.Versions {
		g := ver{v.Version, v.Previous, v.Applications, v.Opened, v.Closed, nil}
		for _, c := range v.Changes {
			g.Changes = append(g.Changes, c.Change+" "+audit.DiffEndName(c.SrcSegment, c.SrcWorkload, c.SrcCIDRs)+" -> "+
				audit.DiffEndName(c.DstSegment, c.DstWorkload, c.DstCIDRs)+" "+c.Ports+" "+c.Identity)
		}
		got = append(got, g)
	}
	want := []ver{
		{vs[1], vs[0], 2, 1, 0, []string{"added web -> app 8443/tcp *"}},
		{vs[2], vs[1], 1, 0, 5, []string{
			"removed external -> app 22/tcp (other)",
			"removed external -> db 22/tcp (other)",
			"removed external -> web 22/tcp (other)",
			"removed web -> app 8443/tcp *",
			"removed web -> db 5432/tcp *",
		}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("versions (-got +want):\n%s", diff)
	}
	if d.Current != vs[2] || !d.NewEdgesSince.Equal(until.Add(-30*time.Hour)) {
		t.Errorf("current %s since %s; want %s since %s", d.Current, d.NewEdgesSince, vs[2], until.Add(-30*time.Hour))
	}
	if len(d.NewEdges) != 1 || d.NewEdges[0].ClientSegment != "web" || d.NewEdges[0].ServerSegment != "db" ||
		d.NewEdges[0].Port != 22 || d.NewEdges[0].Identity != "mallory" || d.NewEdges[0].Flows != 3 {
		t.Errorf("new edges %+v; want only web -> db 22 as mallory with 3 flows", d.NewEdges)
	}
	var flows uint64
	for _, v := range d.Violations {
		flows += v.Flows
		if v.Edges != 1 {
			t.Errorf("violations on %s: %d edges, want 1", v.Day, v.Edges)
		}
	}
	if flows != 3 || len(d.Violations) < 1 || len(d.Violations) > 2 {
		t.Errorf("violations per day %+v; want 3 flows over one or two days", d.Violations)
	}

	res = runCLI(t, args...)
	for _, s := range []string{"2 versions applied, in force: " + vs[2][:12], "replacing " + vs[1][:12] + ": 0 opened, 5 closed",
		"added   web   app  8443/tcp  *", "Service edges first seen since", "mallory", "Violations per day"} {
		if !strings.Contains(res.stdout, s) {
			t.Errorf("table lacks %q:\n%s", s, res.stdout)
		}
	}
	if res := runCLI(t, append(args, "--fail-on", "opened")...); res.code != 1 {
		t.Errorf("--fail-on opened: exit %d, want 1", res.code)
	}
	if res := runCLI(t, append(args, "--fail-on", "sensitive")...); res.code != 0 {
		t.Errorf("--fail-on sensitive: exit %d, want 0 (8443 opened into app only)", res.code)
	}
	if res := runCLI(t, "audit", "drift", "--fail-on", "x"); res.code != 2 || !strings.Contains(res.stderr, `--fail-on: "x" is not opened, sensitive or none`) {
		t.Errorf("bad --fail-on: exit %d, %s", res.code, res.stderr)
	}
	if res := runCLI(t, "audit", "drift", "--help"); res.code != 0 || !strings.Contains(res.stderr, "Usage: flowaudit audit drift") {
		t.Errorf("--help: exit %d, %s", res.code, res.stderr)
	}
}
