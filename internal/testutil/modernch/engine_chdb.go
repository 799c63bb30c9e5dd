//go:build chdb

package modernch

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/chdb-io/chdb-go/chdb"
)

type engine struct {
	mu  sync.Mutex
	s   *chdb.Session
	dir string
}

var (
	once    sync.Once
	shared  *engine
	openErr error
)

// Open returns the process-wide engine, started on first use with its
// data in a fresh folder under os.TempDir.
func Open(t testing.TB) Engine {
	t.Helper()
	if os.Getenv(EnvLib) == "" {
		unavailable(t, EnvLib+" is not set")
	}
	once.Do(func() {
		dir, err := os.MkdirTemp("", "flowaudit-chdb-")
		if err != nil {
			openErr = err
			return
		}
		s, err := chdb.NewSession(dir)
		if err != nil {
			openErr = err
			return
		}
		shared = &engine{s: s, dir: dir}
	})
	if openErr != nil {
		t.Fatalf("start modern ClickHouse engine (%s=%s): %v", EnvLib, os.Getenv(EnvLib), openErr)
	}
	return shared
}

func (e *engine) Dir() string { return e.dir }

func (e *engine) Query(sql, format string) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := e.s.Query(sql, format)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("no result")
	}
	defer r.Free()
	if err := r.Error(); err != nil {
		return nil, err
	}
	return append([]byte(nil), r.Buf()...), nil
}
