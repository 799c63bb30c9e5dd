package schemas

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestClusterDDLGolden pins the ON CLUSTER DDL (clickhouse.cluster) for
// both generations. The parts that need a cluster (ON CLUSTER,
// Replicated engines, Distributed tables) are golden-only; sink's
// TestModernClusterDDL executes the rest on the modern engine.
func TestClusterDDLGolden(t *testing.T) {
	for _, g := range []struct {
		name    string
		version ServerVersion
	}{{"modern", ServerVersion{23, 8}}, {"old", ServerVersion{18, 16}}} {
		t.Run(g.name, func(t *testing.T) {
			got := strings.Join(ClusterDDL("flowaudit", "flowaudit_cluster", g.version, goldenTTL), ";\n\n") + ";\n"
			path := filepath.Join("testdata", "cluster."+g.name+".sql")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(got, string(want)); diff != "" {
				t.Errorf("ClusterDDL(%s) mismatch (-got +want); run go test -update if intended:\n%s", g.version, diff)
			}
		})
	}
}

func TestClusterDDLShape(t *testing.T) {
	stmts := ClusterDDL("fa", "c1", ServerVersion{24, 8}, 0)
	views := 0
	for _, table := range Tables() {
		if table.View != "" {
			views++
		}
	}
	if want := 1 + 2*len(Tables()) + views; len(stmts) != want {
		t.Fatalf("%d statements, want %d (database, a _local and a Distributed table each, views)", len(stmts), want)
	}
	for _, s := range stmts {
		if !strings.Contains(s, " ON CLUSTER c1") {
			t.Errorf("not ON CLUSTER:\n%s", s)
		}
		if strings.Contains(s, "MATERIALIZED VIEW") && (!strings.Contains(s, "FROM fa.flows_local\n") || !strings.Contains(s, "_local AS\n")) {
			t.Errorf("view does not read flows_local into a _local table:\n%s", s)
		}
		if strings.Contains(s, "MergeTree") && !strings.Contains(s, "ENGINE = Replicated") {
			t.Errorf("MergeTree table not replicated:\n%s", s)
		}
	}
	for engine, want := range map[string]string{
		"MergeTree":                        "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')",
		"ReplacingMergeTree(next_offset)":  "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', next_offset)",
		"SummingMergeTree((flows, bytes))": "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', (flows, bytes))",
		"AggregatingMergeTree":             "ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')",
		"ReplacingMergeTree(version)":      "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version)",
	} {
		if got := ReplicatedEngine(engine); got != want {
			t.Errorf("ReplicatedEngine(%s) = %s, want %s", engine, got, want)
		}
	}
}
