//go:build chdb

package chengine

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/chdb-io/chdb-go/chdb"
)

type engine struct {
	mu  sync.Mutex
	s   *chdb.Session
	dir string
}

var (
	openMu sync.Mutex
	shared *engine
	users  int
)

// Compiled reports whether the engine is compiled into this binary.
func Compiled() bool { return true }

// Open returns the process-wide engine, started on first use with its
// data in a fresh folder under os.TempDir, and the function that releases
// it: the last release closes the session and removes the folder.
func Open() (Engine, func(), error) {
	openMu.Lock()
	defer openMu.Unlock()
	if shared == nil {
		dir, err := os.MkdirTemp("", "flowaudit-chdb-")
		if err != nil {
			return nil, nil, fmt.Errorf("modern ClickHouse engine: %w", err)
		}
		s, err := chdb.NewSession(dir)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, nil, fmt.Errorf("start the modern ClickHouse engine (%s=%s): %w", EnvLib, os.Getenv(EnvLib), err)
		}
		shared = &engine{s: s, dir: dir}
	}
	users++
	e := shared
	var once sync.Once
	release := func() {
		once.Do(func() {
			openMu.Lock()
			defer openMu.Unlock()
			if users--; users == 0 && shared == e {
				e.mu.Lock()
				e.s.Cleanup()
				e.mu.Unlock()
				shared = nil
			}
		})
	}
	return e, release, nil
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
