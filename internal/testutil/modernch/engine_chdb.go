//go:build chdb

package modernch

import (
	"os"
	"testing"

	"github.com/flowaudit/flowaudit/internal/chengine"
)

// Open returns the process-wide engine (chengine's), started on first
// use; tests never release it.
func Open(t testing.TB) Engine {
	t.Helper()
	if os.Getenv(EnvLib) == "" {
		unavailable(t, EnvLib+" is not set")
	}
	e, _, err := chengine.Open()
	if err != nil {
		t.Fatal(err)
	}
	return e
}
