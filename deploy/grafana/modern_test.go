//go:build chdb

package grafana

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
	"github.com/flowaudit/flowaudit/schemas"
)

// TestDashboardsOnModernClickHouse runs every panel's SQL on ClickHouse
// 26.7 (chdb) over the same data: the dashboards work on both generations.
func TestDashboardsOnModernClickHouse(t *testing.T) {
	queries := loadQueries(t)
	e := modernch.Open(t)
	db := modernch.Database(t, e)
	for _, sql := range schemas.DDL(db, schemas.ServerVersion{Major: 26, Minor: 7}, 30*24*time.Hour) {
		if _, err := e.Query(sql, "TSV"); err != nil {
			t.Fatalf("DDL: %v\n%s", err, sql)
		}
	}
	for _, s := range fixtureSQL(db) {
		if _, err := e.Query(s, "TSV"); err != nil {
			t.Fatalf("fixture: %v\n%s", err, s)
		}
	}
	for _, q := range queries {
		sql, err := expand(q.SQL, db, rangeFrom, rangeTo, interval)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		out, err := e.Query(sql, "JSONCompact")
		if err != nil {
			t.Errorf("ClickHouse 26.7: %s fails: %v\n%s", q, err, sql)
			continue
		}
		var res struct {
			Meta []struct{ Name, Type string } `json:"meta"`
			Rows int                           `json:"rows"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Errorf("ClickHouse 26.7: %s: %v", q, err)
			continue
		}
		var cols, types []string
		for _, m := range res.Meta {
			cols, types = append(cols, m.Name), append(types, m.Type)
		}
		checkResult(t, "ClickHouse 26.7", q, cols, types, res.Rows)
	}
	t.Logf("%d panel queries ran on ClickHouse 26.7", len(queries))
}
