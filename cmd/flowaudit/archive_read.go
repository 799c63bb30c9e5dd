package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/flowaudit/flowaudit/archive"
	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
	"github.com/flowaudit/flowaudit/internal/chengine"
	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/query"
)

// fromArchiveUsage is the --from-archive flag's help, shared by the audit
// subcommands and report.
const fromArchiveUsage = "read the flows and access events of the Parquet archive under `DIR` (archive.dir) instead of ClickHouse, " +
	"for windows older than ClickHouse's retention: the same queries run on the embedded modern ClickHouse engine " +
	"(binaries built with -tags chdb, CHDB_LIB_PATH set); alerts, policy versions and probe results still come from ClickHouse when it answers"

var archiveDatabases atomic.Int64

// openArchiveReader loads the archive under dir into the embedded modern
// ClickHouse engine (internal/chengine) and returns a query.Reader over
// it, so a command asks the archive exactly what it asks ClickHouse. The
// tables the archive does not hold (archive.NotArchived) are copied from
// the configured ClickHouse; when it does not answer they stay empty and
// a note on warn says so. close drops the engine's copy.
func openArchiveReader(ctx context.Context, cfg config.Configuration, dir string, warn io.Writer) (*query.Reader, func(), error) {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return nil, nil, fmt.Errorf("--from-archive: %s: %v; give the archive.dir folder (the one holding table=flows)", dir, err)
	}
	e, release, err := chengine.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("--from-archive: %w", err)
	}
	conn := chengine.Conn(e)
	db := fmt.Sprintf("flowaudit_archive_%d_%d", os.Getpid(), archiveDatabases.Add(1))
	closeAll := func() {
		_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		release()
	}
	if _, err := archive.Load(ctx, conn, dir, db); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("--from-archive: %w", err)
	}
	ch, err := clickhousedb.Open(cfg.ClickHouse)
	if err == nil {
		defer ch.Close()
		err = ch.Ping(ctx)
	}
	for _, t := range archive.NotArchived {
		if err == nil {
			_, err = archive.CopyTable(ctx, ch, cfg.ClickHouse.Database, conn, db, t)
		}
	}
	if err != nil {
		fmt.Fprintf(warn, "note: --from-archive: alerts, policy versions, probe results and reports are not in the archive and "+
			"could not be read from ClickHouse at %s (%v): they count as none\n", cfg.ClickHouse.Addr, err)
	}
	return query.New(conn, db), closeAll, nil
}
