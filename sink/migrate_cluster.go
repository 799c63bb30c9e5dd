package sink

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/schemas"
)

// MigrateConfigured migrates the database of cfg: Migrate on a single
// server, MigrateCluster when clickhouse.cluster is set.
func MigrateConfigured(ctx context.Context, conn driver.Conn, cfg clickhousedb.Configuration, logger *slog.Logger) (schemas.ServerVersion, error) {
	if cfg.Cluster != "" {
		return MigrateCluster(ctx, conn, cfg.Database, cfg.Cluster, cfg.Retention, logger)
	}
	return Migrate(ctx, conn, cfg.Database, cfg.Retention, logger)
}

// MigrateCluster creates the database and every table ON CLUSTER cluster
// (schemas.DDL with the cluster: Replicated NAME_local tables, Distributed
// NAME tables, views between the local tables). Every statement is IF NOT
// EXISTS, so it is safe to run again; columns added to the description
// later are not added to existing cluster tables (ALTER TABLE ... ON
// CLUSTER by hand, _local tables first, then the Distributed ones).
func MigrateCluster(ctx context.Context, conn driver.Conn, database, cluster string, ttl time.Duration, logger *slog.Logger) (schemas.ServerVersion, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var raw string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&raw); err != nil {
		return schemas.ServerVersion{}, fmt.Errorf("read ClickHouse version: %w", err)
	}
	v, err := schemas.ParseServerVersion(raw)
	if err != nil {
		return schemas.ServerVersion{}, err
	}
	logger.Info("migrating ClickHouse schema on a cluster", "version", raw, "cluster", cluster, "database", database)
	for _, stmt := range schemas.ClusterDDL(database, cluster, v, ttl) {
		if err := conn.Exec(ctx, stmt); err != nil {
			return v, fmt.Errorf("clickhouse.cluster %s: %w (statement: %.120s...)", cluster, err, stmt)
		}
	}
	return v, nil
}
