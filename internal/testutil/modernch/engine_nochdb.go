//go:build !chdb

package modernch

import "testing"

// Open skips (or, under FLOWAUDIT_REQUIRE_CLICKHOUSE=1, fails) the test:
// this binary was built without the `chdb` tag.
func Open(t testing.TB) Engine {
	t.Helper()
	unavailable(t, "the test binary was built without -tags chdb (make test adds it when "+EnvLib+" is set)")
	return nil
}
