package sink_test

import (
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
	"github.com/flowaudit/flowaudit/schemas"
)

// TestModernDDL executes every table, TTL and materialized view of the
// >= 23.8 DDL on the modern engine (ClickHouse 26.7).
func TestModernDDL(t *testing.T) {
	e := modernch.Open(t)
	v := schemas.ServerVersion{Major: 26, Minor: 7}
	db := modernch.Database(t, e)
	for _, table := range schemas.Tables() {
		if _, err := e.Query(table.CreateSQL(db, v, 30*24*time.Hour), "TSV"); err != nil {
			t.Fatalf("create %s on ClickHouse 26.7: %v", table.Name, err)
		}
	}
	for _, table := range schemas.Tables() {
		if sql := table.ViewSQL(db); sql != "" {
			if _, err := e.Query(sql, "TSV"); err != nil {
				t.Fatalf("create view %s_mv on ClickHouse 26.7: %v", table.Name, err)
			}
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
