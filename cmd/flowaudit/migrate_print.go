package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
	"github.com/flowaudit/flowaudit/schemas"
)

// migratePrintFlags are migrate's --print and --server-version.
type migratePrintFlags struct {
	print         bool
	serverVersion string
}

func (m *migratePrintFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&m.print, "print", false, "print the DDL instead of running it; does not connect")
	fs.StringVar(&m.serverVersion, "server-version", "", "`X.Y` of the server the printed DDL is for (default 23.8; "+
		"< 23.8 gets the ClickHouse 18.16 generation); requires --print")
}

// printMigration prints schemas.DDL for the flags' server version: the
// statements Migrate runs on an empty database, one paragraph each.
func printMigration(cfg config.Configuration, m migratePrintFlags, stdout, stderr io.Writer) int {
	if !m.print {
		fmt.Fprintln(stderr, "flowaudit migrate: --server-version only applies with --print (add --print, or drop --server-version to migrate the configured server)")
		return 2
	}
	v := schemas.ServerVersion{Major: 23, Minor: 8}
	if m.serverVersion != "" {
		var err error
		if v, err = schemas.ParseServerVersion(m.serverVersion); err != nil {
			fmt.Fprintf(stderr, "flowaudit migrate: --server-version: %v (for example --server-version 24.3 or 18.16)\n", err)
			return 2
		}
	}
	stmts := schemas.DDL(cfg.ClickHouse.Database, v, cfg.ClickHouse.Retention)
	if cfg.ClickHouse.Cluster != "" {
		stmts = schemas.ClusterDDL(cfg.ClickHouse.Database, cfg.ClickHouse.Cluster, v, cfg.ClickHouse.Retention)
	}
	for _, stmt := range stmts {
		if _, err := fmt.Fprintf(stdout, "%s;\n\n", stmt); err != nil {
			fmt.Fprintf(stderr, "flowaudit migrate: %v\n", err)
			return 1
		}
	}
	return 0
}
