package query

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
	"github.com/flowaudit/flowaudit/schemas"
)

// TestReportSQLModern runs every statement of the report's questions on
// the modern engine (ClickHouse 26.7) over its DDL, with a flow and an
// access event in the window; the old generation runs them in the
// report's end-to-end test.
func TestReportSQLModern(t *testing.T) {
	e := modernch.Open(t)
	db := modernch.Database(t, e)
	v := schemas.ServerVersion{Major: 26, Minor: 7}
	for _, table := range schemas.Tables() {
		if _, err := e.Query(table.CreateSQL(db, v, 0), "TSV"); err != nil {
			t.Fatalf("create %s: %v", table.Name, err)
		}
	}
	for _, table := range schemas.Tables() {
		if sql := table.ViewSQL(db); sql != "" {
			if _, err := e.Query(sql, "TSV"); err != nil {
				t.Fatalf("create view %s_mv: %v", table.Name, err)
			}
		}
	}
	at := time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)
	for _, sql := range []string{
		"INSERT INTO " + db + ".flows (time_received, src_addr, dst_addr, src_port, dst_port, proto, src_segment, dst_segment, src_identity, verdict, rule, service_side, service_port) " +
			"VALUES (toDateTime(" + itoa(at.Unix()) + "), toIPv6('10.1.0.1'), toIPv6('10.2.0.1'), 40000, 5432, 6, 'web', 'db', 'alice', 'allowed', 'web-to-db', 'dst', 5432)",
		"INSERT INTO " + db + ".access_events (time, source, user, src_addr, outcome) VALUES (toDateTime64(" + itoa(at.Unix()) + ", 3), 'sshd', 'root', toIPv6('10.1.0.1'), 'failure')",
	} {
		if _, err := e.Query(sql, "TSV"); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	r := New(nil, db)
	w := Window{From: at.Truncate(time.Hour), To: at.Truncate(time.Hour).Add(time.Hour)}
	for name, sql := range r.reportSQL(w) {
		out, err := e.Query(sql, "TSV")
		if err != nil {
			t.Errorf("%s on ClickHouse 26.7: %v\n%s", name, err, sql)
			continue
		}
		if strings.HasPrefix(name, "service rows") && !strings.HasPrefix(string(out), "web\tdb\talice\t5432\t6\tallowed\tweb-to-db\t1\t") {
			t.Errorf("%s: %q", name, out)
		}
		if name == "failed access" && !strings.Contains(string(out), "sshd\troot\t::ffff:10.1.0.1\tfailure\t1") {
			t.Errorf("%s: %q", name, out)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
