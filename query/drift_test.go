package query

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// insertPolicyVersions writes versions as the sink does (a batch of the
// sink's columns).
func insertPolicyVersions(t *testing.T, r *Reader, vs []schemas.PolicyVersion) {
	t.Helper()
	ctx := context.Background()
	batch, err := r.conn.PrepareBatch(ctx, "INSERT INTO flowaudit.policy_versions (version, loaded_at, path, content, host, summary)")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if err := batch.Append(v.Version, time.Unix(0, int64(v.LoadedAt)), v.Path, string(v.Content), v.Host, v.Summary); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
}

func TestDriftQueries(t *testing.T) {
	_, r := startDB(t)
	ctx := context.Background()
	v := func(content string, at time.Time, host string) schemas.PolicyVersion {
		return schemas.PolicyVersion{Version: schemas.PolicyVersionOf([]byte(content)), LoadedAt: uint64(at.UnixNano()),
			Path: "/etc/p.yaml", Content: []byte(content), Host: host, Summary: "s"}
	}
	insertPolicyVersions(t, r, []schemas.PolicyVersion{
		v("A", t0.Add(-48*time.Hour), "e1"),
		v("A", t0.Add(-48*time.Hour+300*time.Millisecond), "e2"), // the same second on another enricher
		v("B", t0.Add(2*time.Hour), "e1"),
		v("C", t0.Add(30*time.Hour), "e1"), // after until
	})
	apps, err := r.PolicyApplications(ctx, t0.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range apps {
		got = append(got, string(a.Content)+"@"+a.LoadedAt.Format(time.RFC3339))
	}
	if d := cmp.Diff(got, []string{"A@2026-11-28T10:00:00Z", "B@2026-11-30T12:00:00Z"}); d != "" {
		t.Errorf("PolicyApplications (-got +want):\n%s", d)
	}

	insertFlows(t, r, []testFlow{
		// an old edge, seen again in the window
		{t: t0.Add(-24 * time.Hour), src: "10.3.0.10", dst: "10.2.0.10", sport: 40001, dport: 5432, proto: 6, bytes: 10,
			srcSeg: "app", dstSeg: "db", verdict: "allowed", rule: "app-to-db", side: "dst"},
		{t: t0.Add(3 * time.Hour), src: "10.3.0.10", dst: "10.2.0.10", sport: 40002, dport: 5432, proto: 6, bytes: 10,
			srcSeg: "app", dstSeg: "db", verdict: "allowed", rule: "app-to-db", side: "dst"},
		// new in the window: a violation and its reply, two days
		{t: t0.Add(3*time.Hour + 5*time.Minute), src: "10.1.0.5", dst: "10.2.0.10", sport: 40003, dport: 22, proto: 6, bytes: 5,
			srcSeg: "web", dstSeg: "db", srcID: "mallory", side: "dst"},
		{t: t0.Add(3*time.Hour + 6*time.Minute), src: "10.2.0.10", dst: "10.1.0.5", sport: 22, dport: 40003, proto: 6, bytes: 7,
			srcSeg: "db", dstSeg: "web", dstID: "mallory", side: "src"},
		{t: t0.Add(26 * time.Hour), src: "10.1.0.5", dst: "10.2.0.11", sport: 40004, dport: 22, proto: 6, bytes: 5,
			srcSeg: "web", dstSeg: "db", srcID: "mallory", side: "dst"},
		// intra-segment: never an edge
		{t: t0.Add(4 * time.Hour), src: "10.1.0.5", dst: "10.1.0.6", sport: 40005, dport: 80, proto: 6, bytes: 5,
			srcSeg: "web", dstSeg: "web", verdict: "intra_segment", side: "dst"},
	})
	w := Window{From: t0.Add(2 * time.Hour), To: t0.Add(48 * time.Hour)}
	edges, err := r.EdgesFirstSeen(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	wantE := []EdgeSighting{{ClientSegment: "web", ServerSegment: "db", Port: 22, Proto: 6, Identity: "mallory",
		Verdicts: []string{"violation"}, FirstHour: t0.Add(3 * time.Hour), LastSeen: t0.Add(26 * time.Hour), Flows: 3, Bytes: 17}}
	if d := cmp.Diff(edges, wantE); d != "" {
		t.Errorf("EdgesFirstSeen (-got +want):\n%s", d)
	}

	days, err := r.ViolationsPerDay(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	wantD := []DailyViolations{{Day: day, Flows: 2, Edges: 1}, {Day: day.Add(24 * time.Hour), Flows: 1, Edges: 1}}
	if d := cmp.Diff(days, wantD); d != "" {
		t.Errorf("ViolationsPerDay (-got +want):\n%s", d)
	}

	rules, err := r.RuleTraffics(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	wantR := []RuleTraffic{{Rule: "app-to-db", Flows: 1, LastSeen: t0.Add(3 * time.Hour)}}
	if d := cmp.Diff(rules, wantR); d != "" {
		t.Errorf("RuleTraffics (-got +want):\n%s", d)
	}
}
