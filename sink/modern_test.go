package sink_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
	"github.com/flowaudit/flowaudit/schemas"
)

// TestModernDDL executes every table, TTL and materialized view of the
// >= 23.8 DDL (schemas.DDL) on the modern engine (ClickHouse 26.7).
func TestModernDDL(t *testing.T) {
	e := modernch.Open(t)
	v := schemas.ServerVersion{Major: 26, Minor: 7}
	db := modernch.Database(t, e)
	// schemas.DDL is what `flowaudit migrate --print` prints (the CLI's
	// own output is executed by cmd/flowaudit's TestMigratePrintModern).
	for _, sql := range schemas.DDL(db, v, 30*24*time.Hour) {
		if _, err := e.Query(sql, "TSV"); err != nil {
			t.Fatalf("ClickHouse 26.7 rejects: %v\n%s", err, sql)
		}
	}
	t.Run("wrong type fails", func(t *testing.T) {
		bad := schemas.FlowsTable
		bad.Columns = append([]schemas.Column(nil), bad.Columns...)
		bad.Name = "flows_bad"
		sql := strings.Replace(bad.CreateSQL(db, v, 24*time.Hour), "DateTime", "IPv6", 1)
		if _, err := e.Query(sql, "TSV"); err == nil {
			t.Fatalf("a TTL over an IPv6 column was accepted:\n%s", sql)
		}
	})
}

// TestModernClusterDDL executes on ClickHouse 26.7 what of the cluster
// DDL (schemas.ClusterDDL) runs without a cluster: the _local tables, with
// ON CLUSTER removed and each Replicated engine replaced by its plain
// form (replication needs Keeper and the {shard}/{replica} macros), and
// the views, which must read flows_local and fill the _local rollups.
// ON CLUSTER, the Replicated engines and the Distributed tables are
// golden-only (schemas/testdata/cluster.*.sql).
func TestModernClusterDDL(t *testing.T) {
	e := modernch.Open(t)
	db := modernch.Database(t, e)
	v := schemas.ServerVersion{Major: 26, Minor: 7}
	replicated := regexp.MustCompile(`Replicated(\w+)\('/clickhouse/tables/\{shard\}/\{database\}/\{table\}', '\{replica\}'(, )?`)
	skipped := 0
	for _, sql := range schemas.ClusterDDL(db, "flowaudit_cluster", v, 30*24*time.Hour) {
		if strings.Contains(sql, "ENGINE = Distributed(") {
			skipped++
			continue
		}
		local := replicated.ReplaceAllString(strings.ReplaceAll(sql, " ON CLUSTER flowaudit_cluster", ""), "$1(")
		if _, err := e.Query(local, "TSV"); err != nil {
			t.Fatalf("ClickHouse 26.7 rejects: %v\n%s", err, local)
		}
	}
	if skipped != len(schemas.Tables()) {
		t.Errorf("skipped %d Distributed tables, want %d", skipped, len(schemas.Tables()))
	}
	if _, err := e.Query("INSERT INTO "+db+".flows_local (time_received, src_addr, dst_addr, src_port, dst_port, proto, bytes, src_segment, dst_segment, verdict, service_side, service_port, kafka_partition, source_partition, source_offset) "+
		"VALUES (toDateTime(1795771800), toIPv6('10.1.0.1'), toIPv6('10.2.0.1'), 40000, 5432, 6, 100, 'web', 'db', 'allowed', 'dst', 5432, 3, 1, 77)", "TSV"); err != nil {
		t.Fatal(err)
	}
	for _, table := range schemas.Tables() {
		if table.View == "" {
			continue
		}
		out, err := e.Query("SELECT count() FROM "+db+"."+table.Name+"_local", "TSV")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != "1" {
			t.Errorf("%s_local holds %s rows after one insert into flows_local, want 1", table.Name, got)
		}
	}
}
