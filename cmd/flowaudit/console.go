package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
	"github.com/flowaudit/flowaudit/console"
	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/query"
)

func cmdConsole(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("console", "[--config FILE] [--check]", `
Serve the read-only web console on console.listen (default 127.0.0.1:8088):
the segment map (/map), the flows explorer (/flows), alerts (/alerts), the
audit recommendations (/audit), identities (/identities) and reports
(/reports), over the ClickHouse database of clickhouse.*. Pages are
rendered here with embedded assets: nothing is loaded from outside, so it
works air-gapped. With console.tokens set every page needs one of them
("Authorization: Bearer TOKEN", or open any page once with ?token=TOKEN to
set a cookie); without tokens the console refuses a non-loopback address.
"flowaudit run" serves it too.`, stderr)
	var sf stageFlags
	sf.register(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	cfg, ok := loadConfig(sf.config, stderr)
	if !ok {
		return 1
	}
	if cfg.Console.Listen == "" {
		fmt.Fprintln(stderr, "flowaudit console: console.listen is empty; set it to host:port such as 127.0.0.1:8088")
		return 1
	}
	logger := newLogger(cfg.Log, stderr)
	srv, closeConn, err := newConsole(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit console: %v\n", err)
		return 1
	}
	defer closeConn()
	if sf.check {
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}
	lc := &lifecycle{log: logger, deadline: 10 * time.Second}
	if err := lc.start("console", srv.Start, srv.Stop); err != nil {
		fmt.Fprintf(stderr, "flowaudit console: %v\n", err)
		return 1
	}
	lc.watch(srv.Done())
	fmt.Fprintf(stdout, "console: http://%s/map\n", srv.Addr())
	werr := lc.wait()
	if err := lc.stop(); err != nil || werr != nil {
		return 1
	}
	return 0
}

// newConsole builds the console over its own ClickHouse connection.
func newConsole(cfg config.Configuration, logger *slog.Logger) (*console.Server, func(), error) {
	conn, err := clickhousedb.Open(cfg.ClickHouse)
	if err != nil {
		return nil, nil, fmt.Errorf("clickhouse: %w", err)
	}
	srv, err := console.New(cfg.Console, console.Dependencies{
		Reader:     query.New(conn, cfg.ClickHouse.Database),
		PolicyFile: cfg.Policy.File,
		ReportDir:  cfg.Report.Dir,
		Logger:     logger,
	})
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return srv, func() { _ = conn.Close() }, nil
}
