package sink_test

import (
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
