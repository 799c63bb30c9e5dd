// Package chengine is the modern ClickHouse engine embedded in the
// process: ClickHouse 26.7 as a library (libchdb.so from the npm package
// @chdb/lib-linux-x64-gnu), reached through github.com/chdb-io/chdb-go.
// It runs SQL without a server: the tests' second ClickHouse generation,
// and `--from-archive`, which runs the query package's SQL over the
// Parquet archive.
//
// chdb-go loads the library when the program starts and panics when it
// is missing, so the engine is compiled in only with the build tag
// `chdb`; without it Open returns ErrNotCompiled. The library allows one
// session per process: Open shares it, and the last release removes its
// folder.
package chengine

import "errors"

// EnvLib is the environment variable naming libchdb.so (chdb-go's own).
const EnvLib = "CHDB_LIB_PATH"

// Engine is the process-wide modern ClickHouse engine. Queries are
// serialized.
type Engine interface {
	// Query runs one statement and returns its output in format
	// (e.g. "TSV", "JSONEachRow", "Native").
	Query(sql, format string) ([]byte, error)
	// Dir is a folder the engine may read files from (INSERT ... FROM
	// INFILE, file()).
	Dir() string
}

// ErrNotCompiled is Open's error in a binary built without the tag chdb.
var ErrNotCompiled = errors.New("this flowaudit binary was built without the modern ClickHouse engine " +
	"(rebuild with `go build -tags chdb ./cmd/flowaudit` or `make build-chdb`, " +
	"and run it with " + EnvLib + "=/path/to/libchdb.so from the npm package @chdb/lib-linux-x64-gnu@26.7.3-stable.1)")
