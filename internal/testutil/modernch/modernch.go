// Package modernch opens the modern ClickHouse engine for tests:
// ClickHouse 26.7 as a library (libchdb.so from the npm package
// @chdb/lib-linux-x64-gnu, installed by .ci/run), reached through
// github.com/chdb-io/chdb-go. chdb-go loads the library when the program
// starts and panics when it is missing, so the engine is compiled in only
// with the build tag `chdb` (the Makefile sets it when CHDB_LIB_PATH
// names the library); without it Open skips the test, or fails it under
// FLOWAUDIT_REQUIRE_CLICKHOUSE=1.
package modernch

import (
	"os"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowaudit/flowaudit/internal/chengine"
)

// EnvLib is the environment variable naming libchdb.so (chdb-go's own).
const EnvLib = chengine.EnvLib

// Engine is the process-wide modern ClickHouse engine
// (internal/chengine). Queries are serialized; each test works in a
// database of its own.
type Engine = chengine.Engine

// Conn returns a driver.Conn over e (chengine.Conn).
func Conn(e Engine) driver.Conn { return chengine.Conn(e) }

func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("FLOWAUDIT_REQUIRE_CLICKHOUSE") == "1" {
		t.Fatalf("modern ClickHouse engine required (FLOWAUDIT_REQUIRE_CLICKHOUSE=1) but %s; run .ci/run, or install "+
			"@chdb/lib-linux-x64-gnu@26.7.3-stable.1 with npm and set %s=/path/to/libchdb.so with `make test`", why, EnvLib)
	}
	t.Skipf("modern ClickHouse engine not available: %s (see README, Development)", why)
}

// Database creates a fresh database named after the test and returns its
// name.
func Database(t testing.TB, e Engine) string {
	t.Helper()
	name := "t_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	if _, err := e.Query("DROP DATABASE IF EXISTS "+name, "TSV"); err != nil {
		t.Fatalf("drop database %s: %v", name, err)
	}
	if _, err := e.Query("CREATE DATABASE "+name, "TSV"); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return name
}
