package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
	"github.com/flowaudit/flowaudit/schemas"
)

// printedDDL runs `flowaudit migrate --print --server-version version` for
// database and returns its statements.
func printedDDL(t *testing.T, database, version string) []string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "flowaudit.yaml")
	// An unreachable address: --print must not connect.
	if err := os.WriteFile(cfg, []byte("clickhouse:\n  addr: 192.0.2.1:9\n  database: "+database+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, "migrate", "--print", "--server-version", version, "--config", cfg)
	if res.code != 0 {
		t.Fatalf("migrate --print: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	var stmts []string
	for _, s := range strings.Split(res.stdout, ";\n\n") {
		if s = strings.TrimSpace(s); s != "" {
			stmts = append(stmts, s)
		}
	}
	return stmts
}

// wantObjects is the number of tables and materialized views the DDL
// creates.
func wantObjects() int {
	n := len(schemas.Tables())
	for _, table := range schemas.Tables() {
		if table.View != "" {
			n++
		}
	}
	return n
}

// TestMigratePrintModern executes exactly what `migrate --print
// --server-version 26.7` prints on the modern engine (ClickHouse 26.7).
func TestMigratePrintModern(t *testing.T) {
	e := modernch.Open(t)
	db := modernch.Database(t, e)
	stmts := printedDDL(t, db, "26.7")
	if len(stmts) != wantObjects()+1 {
		t.Fatalf("printed %d statements, want %d (the database, tables and views)", len(stmts), wantObjects()+1)
	}
	for _, s := range stmts {
		if _, err := e.Query(s, "TSV"); err != nil {
			t.Fatalf("ClickHouse 26.7 rejects printed DDL: %v\n%s", err, s)
		}
	}
	out, err := e.Query("SELECT count() FROM system.tables WHERE database = '"+db+"'", "TSV")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(wantObjects()) {
		t.Errorf("tables and views in %s = %s, want %d", db, got, wantObjects())
	}
	out, err = e.Query("SELECT type FROM system.columns WHERE database = '"+db+"' AND table = 'flows' AND name IN ('src_addr', 'time_start', 'verdict') ORDER BY name", "TSV")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(string(out)), []string{"IPv6", "DateTime64(3)", "LowCardinality(String)"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("flows column types = %v, want %v", got, want)
	}
}

// TestMigratePrintOld executes what `migrate --print --server-version
// 18.16` prints on Debian's ClickHouse 18.16.
func TestMigratePrintOld(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range printedDDL(t, "printed_old", "18.16") {
		if err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("ClickHouse 18.16 rejects printed DDL: %v\n%s", err, s)
		}
	}
	if got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM system.tables WHERE database = 'printed_old'"); got != uint64(wantObjects()) {
		t.Errorf("tables and views = %d, want %d", got, wantObjects())
	}
}

func TestMigratePrintUsage(t *testing.T) {
	for _, args := range [][]string{
		{"migrate", "--server-version", "24.3"},
		{"migrate", "--print", "--server-version", "twenty"},
	} {
		res := runCLI(t, args...)
		if res.code != 2 || !strings.Contains(res.stderr, "--server-version") {
			t.Errorf("flowaudit %s: exit %d, stderr %q; want 2 naming --server-version", strings.Join(args, " "), res.code, res.stderr)
		}
	}
}

// TestMigratePrintCluster: clickhouse.cluster makes --print emit the ON
// CLUSTER DDL (golden-tested in schemas, executed in part in sink).
func TestMigratePrintCluster(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "flowaudit.yaml")
	if err := os.WriteFile(cfg, []byte("clickhouse:\n  addr: 192.0.2.1:9\n  cluster: prod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, "migrate", "--print", "--config", cfg)
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	want := strings.Join(schemas.ClusterDDL("flowaudit", "prod", schemas.ServerVersion{Major: 23, Minor: 8}, 30*24*time.Hour), ";\n\n") + ";\n\n"
	if res.stdout != want {
		t.Errorf("migrate --print with clickhouse.cluster prints something else than schemas.ClusterDDL:\n%s", res.stdout)
	}
	if err := os.WriteFile(cfg, []byte("clickhouse:\n  cluster: \"prod; DROP\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := runCLI(t, "migrate", "--print", "--config", cfg); res.code == 0 || !strings.Contains(res.stderr, "clickhouse.cluster") {
		t.Errorf("a bad cluster name: exit %d, stderr %q; want an error naming clickhouse.cluster", res.code, res.stderr)
	}
}
