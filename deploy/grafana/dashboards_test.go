// Package grafana holds the tests of the Grafana dashboards and
// provisioning in this folder (the files themselves are JSON and YAML).
package grafana

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"gopkg.in/yaml.v3"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/sink"
)

// The test's fixed dashboard range and interval ($__interval_s).
var (
	rangeFrom = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	rangeTo   = rangeFrom.Add(time.Hour)
	interval  = time.Minute
)

const datasourceUID = "flowaudit-clickhouse"

// panelQuery is one query of one panel.
type panelQuery struct {
	Dashboard, Panel, PanelType, RefID string
	Format                             int
	SQL                                string
}

func (q panelQuery) String() string {
	return fmt.Sprintf("%s / %q (%s) query %s", q.Dashboard, q.Panel, q.PanelType, q.RefID)
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int     `json:"id"`
	Type       string  `json:"type"`
	Title      string  `json:"title"`
	Datasource *dsRef  `json:"datasource"`
	Panels     []panel `json:"panels"` // rows
	Targets    []struct {
		RefID      string `json:"refId"`
		Datasource *dsRef `json:"datasource"`
		EditorType string `json:"editorType"`
		Format     *int   `json:"format"`
		QueryType  string `json:"queryType"`
		RawSQL     string `json:"rawSql"`
	} `json:"targets"`
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// loadQueries reads every dashboard and returns every panel query, failing
// on a dashboard that does not hold together.
func loadQueries(t *testing.T) []panelQuery {
	t.Helper()
	files, err := filepath.Glob("dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	var out []panelQuery
	uids := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(strings.NewReader(string(b)))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: no uid or title", f)
		}
		if prev, ok := uids[d.UID]; ok {
			t.Errorf("%s: uid %s is also %s's", f, d.UID, prev)
		}
		uids[d.UID] = f
		if len(d.Templating.List) != 1 || d.Templating.List[0].Name != "database" || d.Templating.List[0].Query != "flowaudit" {
			t.Errorf("%s: want the one template variable database, default flowaudit", f)
		}
		ids := map[int]bool{}
		var walk func(ps []panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				if p.Type == "row" {
					continue
				}
				if ids[p.ID] {
					t.Errorf("%s: panel id %d twice", f, p.ID)
				}
				ids[p.ID] = true
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", f, p.Title)
				}
				for _, tg := range p.Targets {
					for _, ds := range []*dsRef{p.Datasource, tg.Datasource} {
						if ds == nil || ds.Type != "grafana-clickhouse-datasource" || ds.UID != datasourceUID {
							t.Errorf("%s: panel %q query %s: datasource %+v, want grafana-clickhouse-datasource %s", f, p.Title, tg.RefID, ds, datasourceUID)
						}
					}
					if tg.Format == nil || (*tg.Format != 0 && *tg.Format != 1) || tg.EditorType != "sql" || strings.TrimSpace(tg.RawSQL) == "" {
						t.Errorf("%s: panel %q query %s: want editorType sql, format 0 (time series) or 1 (table) and rawSql", f, p.Title, tg.RefID)
						continue
					}
					out = append(out, panelQuery{Dashboard: filepath.Base(f), Panel: p.Title, PanelType: p.Type, RefID: tg.RefID, Format: *tg.Format, SQL: tg.RawSQL})
				}
			}
		}
		walk(d.Panels)
	}
	return out
}

// macro matches the plugin's macros ($__name or $__name(args)) and the
// dashboard variable.
var macro = regexp.MustCompile(`\$__(\w+)(?:\(([^)]*)\))?|\$\{database\}|\$database\b`)

// expand expands the grafana-clickhouse-datasource macros the way the
// plugin does (pkg/macros) for the fixed range, and the dashboard's
// database variable. A macro that 18.16 cannot run is an error:
// $__timeInterval expands to toStartOfInterval, which 18.16 lacks, and the
// _ms ones to DateTime64 functions it lacks.
func expand(sql, database string, from, to time.Time, every time.Duration) (string, error) {
	var errs []string
	dt := func(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
	d := func(t time.Time) string { return fmt.Sprintf("toDate('%s')", t.UTC().Format("2006-01-02")) }
	out := macro.ReplaceAllStringFunc(sql, func(m string) string {
		if m == "${database}" || m == "$database" {
			return database
		}
		sub := macro.FindStringSubmatch(m)
		name, args := sub[1], []string{}
		if strings.Contains(m, "(") {
			for _, a := range strings.Split(sub[2], ",") {
				args = append(args, strings.TrimSpace(a))
			}
		}
		need := func(n int) bool {
			if len(args) != n {
				errs = append(errs, fmt.Sprintf("$__%s takes %d argument(s), got %d", name, n, len(args)))
				return false
			}
			return true
		}
		switch name {
		case "fromTime":
			return dt(from)
		case "toTime":
			return dt(to)
		case "timeFilter":
			if need(1) {
				return fmt.Sprintf("%s >= %s AND %s <= %s", args[0], dt(from), args[0], dt(to))
			}
		case "dateFilter":
			if need(1) {
				return fmt.Sprintf("%s >= %s AND %s <= %s", args[0], d(from), args[0], d(to))
			}
		case "dateTimeFilter", "dt":
			if need(2) {
				return fmt.Sprintf("(%s >= %s AND %s <= %s) AND (%s >= %s AND %s <= %s)",
					args[0], d(from), args[0], d(to), args[1], dt(from), args[1], dt(to))
			}
		case "interval_s":
			return fmt.Sprint(max(int(every.Seconds()), 1))
		case "timeInterval", "timeInterval_ms":
			errs = append(errs, "$__"+name+" expands to toStartOfInterval, which ClickHouse 18.16 lacks: "+
				"bucket with toDateTime(intDiv(toUInt32(col), $__interval_s) * $__interval_s)")
		case "fromTime_ms", "toTime_ms", "timeFilter_ms":
			errs = append(errs, "$__"+name+" expands to DateTime64 functions ClickHouse 18.16 lacks: use $__"+strings.TrimSuffix(name, "_ms"))
		default:
			errs = append(errs, "$__"+name+" is not a grafana-clickhouse-datasource macro this test knows")
		}
		return m
	})
	if len(errs) > 0 {
		return "", fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	if strings.Contains(out, "$") {
		return "", fmt.Errorf("a $ is left after expansion: %s", out)
	}
	return out, nil
}

func TestExpand(t *testing.T) {
	got, err := expand("SELECT 1 FROM ${database}.flows WHERE $__timeFilter(time_received) AND x < $__toTime GROUP BY intDiv(toUInt32(t), $__interval_s)",
		"db", rangeFrom, rangeTo, interval)
	want := "SELECT 1 FROM db.flows WHERE time_received >= toDateTime(1796032800) AND time_received <= toDateTime(1796036400) AND x < toDateTime(1796036400) GROUP BY intDiv(toUInt32(t), 60)"
	if err != nil || got != want {
		t.Errorf("expand: %q, %v\nwant %q", got, err, want)
	}
	for _, bad := range []string{"$__timeInterval(t)", "$__timeFilter_ms(t)", "$__nope", "$__timeFilter(a, b)"} {
		if _, err := expand(bad, "db", rangeFrom, rangeTo, interval); err == nil {
			t.Errorf("expand(%q): no error", bad)
		}
	}
}

// fixtureSQL is demo-like data in database db for the fixed range: four
// exporters in the four protocols, the segmented network of the demo
// (web, app, db, external), identities, a violation, a staged deny, drops,
// alerts and access-log logins. Both ClickHouse generations accept it.
func fixtureSQL(db string) []string {
	t0 := rangeFrom.Unix()
	arr := func(vs ...string) string { return "['" + strings.Join(vs, "', '") + "']" }
	k := "arrayElement(%s, toUInt32(1 + number %% 6))"
	pick := func(vs ...string) string { return fmt.Sprintf(k, arr(vs...)) }
	pickN := func(typ string, vs ...int) string {
		s := make([]string, len(vs))
		for i, v := range vs {
			s[i] = fmt.Sprint(v)
		}
		return fmt.Sprintf("%s(arrayElement([%s], toUInt32(1 + number %% 6)))", typ, strings.Join(s, ", "))
	}
	addr := func(vs ...string) string {
		return fmt.Sprintf("IPv6StringToNum(concat('::ffff:', %s))", pick(vs...))
	}
	flows := fmt.Sprintf(`INSERT INTO %[1]s.flows (time_received, time_start, time_end, flow_type, exporter, src_addr, dst_addr,
    src_port, dst_port, proto, bytes, packets, src_segment, dst_segment, src_identity, dst_identity, verdict, rule,
    staged_verdict, staged_rule, service_side, service_port, fw_action)
SELECT toDateTime(%[2]d + number * 2), toDateTime(%[2]d + number * 2 - 20),
    if(number %% 5 = 0, toDateTime(0), toDateTime(%[2]d + number * 2 - 3)),
    arrayElement(['netflow_v5', 'netflow_v9', 'ipfix', 'sflow'], toUInt32(1 + number %% 4)),
    IPv6StringToNum(concat('::ffff:192.0.2.', toString(1 + number %% 4))),
    %[3]s, %[4]s, %[5]s, %[6]s, %[7]s, toUInt64(100 + number %% 900), toUInt64(1 + number %% 7),
    %[8]s, %[9]s, %[10]s, %[11]s, %[12]s, %[13]s, %[14]s, %[15]s, %[16]s, %[17]s,
    if(number %% 12 = 2, 'dropped', if(number %% 12 = 8, 'denied', 'forwarded'))
FROM numbers(1800)`, db, t0,
		addr("10.1.0.5", "10.3.0.10", "10.1.0.6", "10.3.0.10", "198.51.100.7", "10.3.0.11"),
		addr("10.3.0.10", "10.1.0.5", "10.2.0.10", "10.2.0.10", "10.1.0.5", "10.3.0.10"),
		pickN("toUInt16", 40001, 8080, 50000, 51000, 33000, 52000),
		pickN("toUInt16", 8080, 40001, 5432, 5432, 443, 9000),
		pickN("toUInt8", 6, 6, 6, 6, 6, 17),
		pick("web", "app", "web", "app", "external", "app"),
		pick("app", "web", "db", "db", "web", "app"),
		pick("alice", "", "bob", "svc-checkout", "", ""),
		pick("", "alice", "", "", "", ""),
		pick("allowed", "allowed", "violation", "allowed", "allowed", "intra_segment"),
		pick("web-to-app", "web-to-app", "", "app-to-db", "internet-to-web", ""),
		pick("allowed", "allowed", "violation", "violation", "allowed", "intra_segment"),
		pick("web-to-app", "web-to-app", "", "", "internet-to-web", ""),
		pick("dst", "src", "dst", "dst", "dst", "dst"),
		pickN("toUInt16", 8080, 8080, 5432, 5432, 443, 9000),
	)
	alerts := fmt.Sprintf(`INSERT INTO %[1]s.alerts (alert_id, time, kind, severity, src_addr, dst_addr, src_segment, dst_segment,
    src_identity, dst_port, proto, first_seen, last_seen, count, bytes, summary, evidence, version)
SELECT concat('a-', toString(number)), toDateTime(%[2]d + number * 400),
    arrayElement(['policy_violation', 'port_scan', 'policy_violation', 'brute_force', 'new_edge', 'policy_violation'], toUInt32(1 + number %% 6)),
    arrayElement(['high', 'medium', 'high', 'critical', 'low', 'high'], toUInt32(1 + number %% 6)),
    IPv6StringToNum('::ffff:10.1.0.6'), IPv6StringToNum('::ffff:10.2.0.10'), 'web', 'db', 'bob', toUInt16(5432), toUInt8(6),
    toDateTime(%[2]d + number * 400), toDateTime(%[2]d + number * 400 + 60), toUInt64(2 + number), toUInt64(600),
    'web -> db 5432/tcp is not allowed', '{"flows":2}', toUInt64(1)
FROM numbers(8)`, db, t0)
	access := fmt.Sprintf(`INSERT INTO %[1]s.access_events (time, received, source, host, user, src_addr, src_port, dst_addr, dst_port,
    action, outcome, auth_method)
SELECT toDateTime(%[2]d + number * 30), toDateTime(%[2]d + number * 30 + 1), 'sshd', 'db-1',
    arrayElement(['alice', 'bob', 'carol'], toUInt32(1 + number %% 3)),
    IPv6StringToNum(concat('::ffff:10.1.0.', toString(5 + number %% 3))), toUInt16(40000 + number), IPv6StringToNum('::ffff:10.2.0.10'),
    toUInt16(22), 'login', if(number %% 4 = 0, 'failure', 'success'), 'publickey'
FROM numbers(120)`, db, t0)
	return []string{flows, alerts, access}
}

// checkResult asserts what a panel's result must be: rows, a time column
// first for time series, and the fields a Node Graph reads.
func checkResult(t *testing.T, engine string, q panelQuery, cols, types []string, rows int) {
	t.Helper()
	if rows == 0 {
		t.Errorf("%s: %s returned no rows", engine, q)
	}
	if q.Format == 0 && (len(types) == 0 || !strings.HasPrefix(types[0], "DateTime")) {
		t.Errorf("%s: %s is a time series but its first column is %v", engine, q, types)
	}
	if q.PanelType == "nodeGraph" {
		need := map[string][]string{"A": {"id", "title", "mainstat"}, "B": {"id", "source", "target", "mainstat"}}[q.RefID]
		have := map[string]bool{}
		for _, c := range cols {
			have[c] = true
		}
		for _, n := range need {
			if !have[n] {
				t.Errorf("%s: %s lacks the Node Graph field %s (has %v)", engine, q, n, cols)
			}
		}
	}
}

func TestDashboardsOnClickHouse18(t *testing.T) {
	queries := loadQueries(t)
	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	ctx := context.Background()
	const db = "flowaudit"
	if _, err := sink.Migrate(ctx, conn, db, 0, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range fixtureSQL(db) {
		if err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("fixture: %v\n%s", err, s)
		}
	}
	kinds := runQueries(t, conn, queries, db, rangeFrom, rangeTo)
	var got []string
	for k := range kinds {
		got = append(got, k)
	}
	sort.Strings(got)
	for _, want := range []string{"heatmap", "nodeGraph", "table", "timeseries"} {
		if !kinds[want] {
			t.Errorf("no %s panel among %v", want, got)
		}
	}
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d panel queries ran on ClickHouse %s", len(queries), version)
}

// runQueries runs every query over [from, to] on conn and checks each
// result; it returns the panel types seen.
func runQueries(t *testing.T, conn driver.Conn, queries []panelQuery, db string, from, to time.Time) map[string]bool {
	t.Helper()
	ctx := context.Background()
	kinds := map[string]bool{}
	for _, q := range queries {
		kinds[q.PanelType] = true
		sql, err := expand(q.SQL, db, from, to, interval)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			t.Errorf("ClickHouse 18.16: %s fails: %v\n%s", q, err, sql)
			continue
		}
		var types []string
		for _, ct := range rows.ColumnTypes() {
			types = append(types, ct.DatabaseTypeName())
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Errorf("ClickHouse 18.16: %s: %v", q, err)
		}
		rows.Close()
		checkResult(t, "ClickHouse 18.16", q, rows.Columns(), types, n)
	}
	return kinds
}

// TestDashboardsOnDemo runs the panels on a live `make demo` database
// (FLOWAUDIT_DEMO_CLICKHOUSE=127.0.0.1:9000 after make demo; database
// flowaudit_demo) over the last three whole hours.
func TestDashboardsOnDemo(t *testing.T) {
	addr := os.Getenv("FLOWAUDIT_DEMO_CLICKHOUSE")
	if addr == "" {
		t.Skip("FLOWAUDIT_DEMO_CLICKHOUSE is not set (run make demo, then set it to 127.0.0.1:9000)")
	}
	queries := loadQueries(t)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: "default", Username: "default"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to := time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	runQueries(t, conn, queries, "flowaudit_demo", to.Add(-3*time.Hour), to)
	t.Logf("%d panel queries ran on the demo's data", len(queries))
}

func TestProvisioning(t *testing.T) {
	b, err := os.ReadFile("provisioning/datasources/flowaudit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			UID      string         `yaml:"uid"`
			Type     string         `yaml:"type"`
			JSONData map[string]any `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 || ds.Datasources[0].UID != datasourceUID ||
		ds.Datasources[0].Type != "grafana-clickhouse-datasource" || ds.Datasources[0].JSONData["protocol"] != "native" {
		t.Errorf("datasource provisioning: %+v", ds)
	}
	b, err = os.ReadFile("provisioning/dashboards/flowaudit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dp struct {
		Providers []struct {
			Type    string            `yaml:"type"`
			Options map[string]string `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(b, &dp); err != nil || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" || dp.Providers[0].Options["path"] == "" {
		t.Errorf("dashboard provisioning: %+v %v", dp, err)
	}
}
