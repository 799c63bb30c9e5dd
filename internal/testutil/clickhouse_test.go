package testutil

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestStartClickHouseRestartKeepsData(t *testing.T) {
	s := StartClickHouse(t)
	conn := s.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatalf("SELECT version(): %v", err)
	}
	if version == "" || !strings.Contains(version, ".") {
		t.Fatalf("version() = %q, want a dotted version", version)
	}
	t.Logf("clickhouse-server %s on %s (http %s)", version, s.Addr, s.HTTPAddr)

	if err := conn.Exec(ctx, "CREATE TABLE default.restart_probe (n UInt64) ENGINE = MergeTree() ORDER BY n"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	if err := conn.Exec(ctx, "INSERT INTO default.restart_probe (n) SELECT number FROM system.numbers LIMIT 1000"); err != nil {
		t.Fatalf("insert: %v", err)
	}

	addr := s.Addr
	s.Stop(t)
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded while the server is stopped")
	}
	s.Start(t)
	if s.Addr != addr {
		t.Fatalf("Addr after restart = %s, want %s", s.Addr, addr)
	}

	// The same Conn must work again: sinks keep theirs across an outage.
	var got uint64
	if err := conn.QueryRow(ctx, "SELECT toUInt64(sum(n)) FROM default.restart_probe").Scan(&got); err != nil {
		t.Fatalf("query after restart on the old conn: %v", err)
	}
	if want := uint64(999 * 1000 / 2); got != want {
		t.Fatalf("sum(n) after restart = %d, want %d", got, want)
	}
	if got := s.QueryUint64(t, "SELECT toUInt64(count()) FROM default.restart_probe WHERE n >= ?", 500); got != 500 {
		t.Fatalf("count() after restart = %d, want 500", got)
	}
}

func TestFindClickHouseServerHonoursEnv(t *testing.T) {
	t.Setenv(EnvClickHouseServer, "/nonexistent/clickhouse-server")
	if _, err := findClickHouseServer(); err == nil || !strings.Contains(err.Error(), EnvClickHouseServer) {
		t.Fatalf("findClickHouseServer() error = %v, want one naming %s", err, EnvClickHouseServer)
	}
	t.Setenv(EnvClickHouseServer, "/bin/true")
	got, err := findClickHouseServer()
	if err != nil || len(got) != 1 || got[0] != "/bin/true" {
		t.Fatalf("findClickHouseServer() = %v, %v; want [/bin/true]", got, err)
	}
}

func TestStartReportsServerOutput(t *testing.T) {
	// A "server" that dies at once: start must fail fast and quote its output.
	s := &ClickHouseServer{Dir: t.TempDir(), binary: []string{"/bin/sh", "-c", "echo boom-from-server >&2; exit 3", "sh"}}
	if err := s.choosePorts(); err != nil {
		t.Fatal(err)
	}
	if err := s.writeConfig(); err != nil {
		t.Fatal(err)
	}
	err := s.start()
	if err == nil {
		t.Fatal("start succeeded with a server that exits")
	}
	for _, want := range []string{"exited before answering", "boom-from-server", "exit status 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error lacks %q:\n%v", want, err)
		}
	}
}
