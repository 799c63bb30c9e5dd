//go:build !chdb

package chengine

// Compiled reports whether the engine is compiled into this binary.
func Compiled() bool { return false }

// Open returns ErrNotCompiled: this binary was built without the tag chdb.
func Open() (Engine, func(), error) { return nil, nil, ErrNotCompiled }
