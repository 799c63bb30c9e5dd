package audit

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/query"
)

func TestDigestOf(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	w := query.Window{From: t0, To: t0.Add(24 * time.Hour)}
	p := parsePolicy(t, diffBase)
	var violations []query.ViolationEdge
	for i := range DigestTop + 2 {
		violations = append(violations, query.ViolationEdge{ClientSegment: "web", ServerSegment: "db", Port: uint16(1000 + i), Proto: 6,
			Rules: []string{""}, Flows: uint64(i + 1)})
	}
	d := DigestOf(DigestInput{
		Window: w, Policy: p,
		NewEdges: []query.EdgeSighting{
			{ClientSegment: "web", ServerSegment: "db", Port: 22, Proto: 6, Identity: "mallory", FirstHour: t0.Add(time.Hour)},
			{ClientSegment: "web", ServerSegment: "db", Port: 23, Proto: 6, FirstHour: t0.Add(2 * time.Hour)}, // no identity
			{ClientSegment: "web", ServerSegment: "app", Port: 9000, Proto: 6, Identity: "bob", FirstHour: t0.Add(3 * time.Hour)},
		},
		Violations: violations,
		Alerts: []query.Alert{{Kind: "port_scan", Severity: "high"}, {Kind: "new_edge", Severity: "low"},
			{Kind: "port_scan", Severity: "high"}, {Kind: "port_scan", Severity: "critical"}},
		Rules:       []query.RuleTraffic{{Rule: "web-to-app", Flows: 5}},
		RulesBefore: []query.RuleTraffic{{Rule: "web-to-app", Flows: 9}, {Rule: "app-to-db", Flows: 3}, {Rule: "admin-ssh", Flows: 7}},
	})
	if len(d.New.Edges) != 3 || len(d.New.SensitiveIdentities) != 1 || d.New.SensitiveIdentities[0].Identity != "mallory" {
		t.Errorf("new edges %+v, sensitive %+v", d.New.Edges, d.New.SensitiveIdentities)
	}
	if len(d.Hot.Violations) != DigestTop || d.Hot.Violations[0].Flows != DigestTop+2 || len(d.Hot.Violations[0].Rules) != 0 {
		t.Errorf("hot violations %+v", d.Hot.Violations)
	}
	wantAlerts := []AlertCount{{"port_scan", "high", 2}, {"new_edge", "low", 1}, {"port_scan", "critical", 1}}
	if diff := cmp.Diff(d.Hot.Alerts, wantAlerts); diff != "" {
		t.Errorf("alerts (-got +want):\n%s", diff)
	}
	wantQuiet := []QuietRule{{Rule: "admin-ssh", PreviousFlows: 7}, {Rule: "app-to-db", PreviousFlows: 3}}
	if diff := cmp.Diff(d.Quiet, wantQuiet); diff != "" {
		t.Errorf("quiet (-got +want):\n%s", diff)
	}
	if !d.PreviousFrom.Equal(t0.Add(-24*time.Hour)) || d.Empty() {
		t.Errorf("previous from %s, empty %v", d.PreviousFrom, d.Empty())
	}
	if !DigestOf(DigestInput{Window: w}).Empty() {
		t.Error("a digest of nothing is not empty")
	}
}
