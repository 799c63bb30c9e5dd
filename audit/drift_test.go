package audit

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/query"
	"github.com/flowaudit/flowaudit/schemas"
)

func TestDriftOf(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	wider := strings.Replace(diffBase, `["5432/tcp"]`, `["5432/tcp", "6432/tcp"]`, 1)
	app := func(content string, day int) query.PolicyApplication {
		return query.PolicyApplication{Version: schemas.PolicyVersionOf([]byte(content)), LoadedAt: t0.Add(time.Duration(day) * 24 * time.Hour), Content: []byte(content)}
	}
	apps := []query.PolicyApplication{
		app(diffBase, 0), app(diffBase, 1), // in force at the window's start, applied twice
		app(wider, 12), app(wider, 13),
		app(diffBase, 15), // rolled back
		app("segments: [", 16),
	}
	w := query.Window{From: t0.Add(10 * 24 * time.Hour), To: t0.Add(20 * 24 * time.Hour)}
	if got := NewEdgesSince(apps, w); !got.Equal(apps[5].LoadedAt) {
		t.Errorf("NewEdgesSince = %s, want the last version's %s", got, apps[5].LoadedAt)
	}
	d := DriftOf(w, apps, nil, []query.DailyViolations{{Day: t0, Flows: 3, Edges: 2}})
	type ver struct {
		Version, Previous string
		Applications      int
		Opened, Closed    int
		Error             bool
	}
	var got []ver
	for _, v := range d.Versions {
		got = append(got, ver{v.Version, v.Previous, v.Applications, v.Opened, v.Closed, v.Error != ""})
	}
	want := []ver{
		{apps[2].Version, apps[0].Version, 2, 1, 0, false},
		{apps[0].Version, apps[2].Version, 1, 0, 1, false},
		{apps[5].Version, apps[0].Version, 1, 0, 0, true},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("versions (-got +want):\n%s", diff)
	}
	if d.Current != apps[5].Version || len(d.Violations) != 1 || d.Violations[0].Day != "2026-11-01" {
		t.Errorf("current %s, violations %+v", d.Current, d.Violations)
	}
}
