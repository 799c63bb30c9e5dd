package schemas

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// goldenTTL is the retention used for the golden DDL: whole days, as in
// production configurations.
const goldenTTL = 90 * 24 * time.Hour

// TestCreateSQLGolden pins the DDL of every table for both generations.
// The old-generation DDL is also executed for real by sink's migration
// tests; the modern one only here.
func TestCreateSQLGolden(t *testing.T) {
	generations := []struct {
		name    string
		version ServerVersion
	}{
		{"modern", ServerVersion{23, 8}},
		{"old", ServerVersion{18, 16}},
	}
	for _, table := range Tables() {
		for _, g := range generations {
			t.Run(table.Name+"."+g.name, func(t *testing.T) {
				got := table.CreateSQL("flowaudit", g.version, goldenTTL) + "\n"
				path := filepath.Join("testdata", table.Name+"."+g.name+".sql")
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
					t.Errorf("CreateSQL(%s) mismatch (-got +want); run go test -update if intended:\n%s", g.version, diff)
				}
			})
		}
	}
}

func TestTablesValid(t *testing.T) {
	names := map[string]bool{}
	for _, table := range Tables() {
		if err := table.Validate(); err != nil {
			t.Errorf("Validate() = %v", err)
		}
		if names[table.Name] {
			t.Errorf("table %s listed twice in Tables()", table.Name)
		}
		names[table.Name] = true
		for _, c := range table.Columns {
			for _, v := range []ServerVersion{{18, 16}, {23, 8}} {
				_ = c.SQLType(v) // panics on an unknown type
			}
		}
	}
}

func TestValidateRejects(t *testing.T) {
	base := func() Table {
		return Table{
			Name:      "t",
			Columns:   []Column{{Name: "time", Type: TypeDateTime}, {Name: "n", Type: TypeUInt64}},
			Engine:    "MergeTree",
			OrderBy:   "time",
			TTLColumn: "time",
		}
	}
	cases := []struct {
		name   string
		mutate func(*Table)
		want   string
	}{
		{"duplicate column", func(t *Table) { t.Columns[1].Name = "time" }, "declared twice"},
		{"bad column name", func(t *Table) { t.Columns[1].Name = "a-b" }, "not a plain identifier"},
		{"unknown type", func(t *Table) { t.Columns[1].Type = 0 }, "unknown type"},
		{"ttl not a column", func(t *Table) { t.TTLColumn = "nope" }, "not a column"},
		{"ttl not time", func(t *Table) { t.TTLColumn = "n" }, "want a time type"},
		{"no order", func(t *Table) { t.OrderBy = "" }, "required"},
	}
	if err := (base()).Validate(); err != nil {
		t.Fatalf("base table: Validate() = %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			table := base()
			table.Columns = append([]Column(nil), table.Columns...)
			tc.mutate(&table)
			err := table.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestFlowsContract checks the column names DESIGN.md promises analysts.
func TestFlowsContract(t *testing.T) {
	required := []string{
		"time_received", "time_start", "time_end", "flow_type", "exporter",
		"sampling_rate", "src_addr", "dst_addr", "src_port", "dst_port",
		"proto", "bytes", "packets", "tcp_flags", "in_if", "out_if",
		"src_segment", "dst_segment", "src_workload", "dst_workload",
		"src_identity", "dst_identity", "verdict", "rule",
	}
	for _, name := range required {
		if _, ok := FlowsTable.Column(name); !ok {
			t.Errorf("flows lacks contract column %s", name)
		}
	}
	if c, _ := FlowsTable.Column("verdict"); c.Default != "'unknown'" {
		t.Errorf("verdict default = %q, want 'unknown'", c.Default)
	}
}

func TestParseServerVersion(t *testing.T) {
	cases := []struct {
		in      string
		want    ServerVersion
		modern  bool
		wantErr bool
	}{
		{in: "18.16.1", want: ServerVersion{18, 16}},
		{in: "23.7.6.111", want: ServerVersion{23, 7}},
		{in: "23.8.2.7", want: ServerVersion{23, 8}, modern: true},
		{in: "24.3.1.2672", want: ServerVersion{24, 3}, modern: true},
		{in: " 25.1 \n", want: ServerVersion{25, 1}, modern: true},
		{in: "", wantErr: true},
		{in: "23", wantErr: true},
		{in: "v23.8", wantErr: true},
		{in: "23.x.1", wantErr: true},
	}
	for _, tc := range cases {
		got, err := ParseServerVersion(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseServerVersion(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(got, tc.want); diff != "" {
			t.Errorf("ParseServerVersion(%q) (-got +want):\n%s", tc.in, diff)
		}
		if !tc.wantErr && got.Modern() != tc.modern {
			t.Errorf("ParseServerVersion(%q).Modern() = %v, want %v", tc.in, got.Modern(), tc.modern)
		}
	}
}

func TestTTL(t *testing.T) {
	cases := []struct {
		ttl  time.Duration
		want string
	}{
		{0, ""},
		{-time.Hour, ""},
		{30 * 24 * time.Hour, "toDateTime(time_received) + INTERVAL 30 DAY"},
		{36 * time.Hour, "toDateTime(time_received) + INTERVAL 129600 SECOND"},
		{1500 * time.Millisecond, "toDateTime(time_received) + INTERVAL 1 SECOND"},
		{time.Millisecond, "toDateTime(time_received) + INTERVAL 1 SECOND"},
	}
	for _, tc := range cases {
		if got := FlowsTable.TTL(tc.ttl); got != tc.want {
			t.Errorf("TTL(%v) = %q, want %q", tc.ttl, got, tc.want)
		}
	}
	if got := KafkaOffsetsTable.TTL(time.Hour); got != "" {
		t.Errorf("kafka_offsets TTL = %q, want none", got)
	}
	// Old servers never get a TTL, and modern ones none without retention.
	for _, tc := range []struct {
		v   ServerVersion
		ttl time.Duration
	}{{ServerVersion{18, 16}, time.Hour}, {ServerVersion{23, 8}, 0}} {
		if sql := FlowsTable.CreateSQL("db", tc.v, tc.ttl); strings.Contains(sql, "TTL") {
			t.Errorf("CreateSQL(%v, ttl %v) contains TTL:\n%s", tc.v, tc.ttl, sql)
		}
	}
}

func TestQuoting(t *testing.T) {
	if got, want := QualifiedName("flow-audit", "flows"), "`flow-audit`.flows"; got != want {
		t.Errorf("QualifiedName = %s, want %s", got, want)
	}
	if got, want := QuoteIdent("a`b"), "`a\\`b`"; got != want {
		t.Errorf("QuoteIdent = %s, want %s", got, want)
	}
	c := Column{Name: "x", Type: TypeString, Comment: `it's \ here`}
	if got, want := c.Definition(ServerVersion{18, 16}), `x String COMMENT 'it\'s \\ here'`; got != want {
		t.Errorf("Definition = %s, want %s", got, want)
	}
	got := KafkaOffsetsTable.InsertSQL("flowaudit")
	want := "INSERT INTO flowaudit.kafka_offsets (consumer_group, topic, partition, next_offset, updated)"
	if got != want {
		t.Errorf("InsertSQL = %s, want %s", got, want)
	}
}
