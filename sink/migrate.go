package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowaudit/flowaudit/schemas"
)

// Migrate brings database up to the description in schemas.Tables(): it
// reads version() to pick the DDL generation, creates the database and any
// missing table, and adds columns the description has but the server's
// table lacks. It never drops or retypes anything; a column whose type
// differs from the description (say, a table created on 18.16 and now on a
// modern server) is logged and left alone. Running it again is a no-op, and
// two sinks migrating at once are tolerated.
//
// ttl is the flows retention applied as a TTL on modern servers (0 for
// none); it only takes effect when flows is created. The returned version
// tells writers which column types to expect.
func Migrate(ctx context.Context, conn driver.Conn, database string, ttl time.Duration, logger *slog.Logger) (schemas.ServerVersion, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if database == "" {
		return schemas.ServerVersion{}, errors.New("migrate ClickHouse schema: empty database name")
	}
	var raw string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&raw); err != nil {
		return schemas.ServerVersion{}, fmt.Errorf("read ClickHouse version: %w", err)
	}
	v, err := schemas.ParseServerVersion(raw)
	if err != nil {
		return schemas.ServerVersion{}, err
	}
	generation := "modern"
	if !v.Modern() {
		generation = "old"
	}
	logger.Info("migrating ClickHouse schema", "version", raw, "ddl", generation, "database", database)
	if ttl > 0 && !v.Modern() {
		logger.Warn("ClickHouse before 23.8 has no TTL: flows retention must be done by dropping daily partitions",
			"version", raw, "ttl", ttl)
	}

	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+schemas.QuoteIdent(database)); err != nil {
		return v, fmt.Errorf("create database %s: %w", database, err)
	}
	for _, table := range schemas.Tables() {
		if err := migrateTable(ctx, conn, database, table, v, ttl, logger); err != nil {
			return v, err
		}
	}
	// Views last: their source and target tables must exist.
	for _, table := range schemas.Tables() {
		if err := migrateView(ctx, conn, database, table, logger); err != nil {
			return v, err
		}
	}
	return v, nil
}

// migrateView creates the materialized view of table, or recreates it
// when the existing view does not fill every stored column of the table
// (the table gained a column, say segment_matrix_1m's staged_verdict, that
// the old view's SELECT lacks). Rows inserted into the source between the
// drop and the create are not rolled up: that happens once per such
// upgrade.
func migrateView(ctx context.Context, conn driver.Conn, database string, table schemas.Table, logger *slog.Logger) error {
	sql := table.ViewSQL(database)
	if sql == "" {
		return nil
	}
	name := schemas.QualifiedName(database, table.Name+"_mv")
	var existing string
	rows, err := conn.Query(ctx, "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", database, table.Name+"_mv")
	if err != nil {
		return fmt.Errorf("read materialized view %s: %w", name, err)
	}
	for rows.Next() {
		if err := rows.Scan(&existing); err != nil {
			rows.Close()
			return fmt.Errorf("read materialized view %s: %w", name, err)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read materialized view %s: %w", name, err)
	}
	if existing != "" {
		var missing []string
		for _, c := range table.Columns {
			if c.Alias == "" && !containsWord(existing, c.Name) {
				missing = append(missing, c.Name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		logger.Info("recreating materialized view: it does not fill every column", "view", name, "missing", missing)
		if err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+name); err != nil {
			return fmt.Errorf("drop outdated materialized view %s: %w", name, err)
		}
	}
	if err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("create materialized view %s: %w", name, err)
	}
	return nil
}

// containsWord reports whether s holds word as a whole identifier.
func containsWord(s, word string) bool {
	isIdent := func(b byte) bool {
		return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
	}
	for i := 0; ; {
		j := strings.Index(s[i:], word)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(word)
		if (j == 0 || !isIdent(s[j-1])) && (end == len(s) || !isIdent(s[end])) {
			return true
		}
		i = j + 1
	}
}

// migrateTable creates table or adds its missing columns.
func migrateTable(ctx context.Context, conn driver.Conn, database string, table schemas.Table,
	v schemas.ServerVersion, ttl time.Duration, logger *slog.Logger) error {
	name := schemas.QualifiedName(database, table.Name)
	if err := table.Validate(); err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	existing, err := serverColumns(ctx, conn, database, table.Name)
	if err != nil {
		return err
	}
	if len(existing) == 0 {
		if err := conn.Exec(ctx, table.CreateSQL(database, v, ttl)); err != nil {
			return fmt.Errorf("create table %s: %w", name, err)
		}
		logger.Info("created table", "table", name, "columns", len(table.Columns))
		return nil
	}

	var retyped []string
	after := ""
	for _, c := range table.Columns {
		if typ, ok := existing[c.Name]; ok {
			if typ != c.SQLType(v) {
				retyped = append(retyped, c.Name+" "+typ+" (want "+c.SQLType(v)+")")
			}
			after = c.Name
			continue
		}
		if err := addColumn(ctx, conn, database, table, c, after, v, inSortingKey(table, c.Name)); err != nil {
			return err
		}
		logger.Info("added column", "table", name, "column", c.Name, "type", c.SQLType(v))
		after = c.Name
	}
	if v.Modern() && table.ModernSettings != "" {
		// Tables created before the setting was described get it too.
		if err := conn.Exec(ctx, "ALTER TABLE "+name+" MODIFY SETTING "+table.ModernSettings); err != nil {
			logger.Warn("could not apply table settings", "table", name, "settings", table.ModernSettings, "err", err)
		}
	}
	if len(retyped) > 0 {
		logger.Warn("columns differ in type from the description; left as they are",
			"table", name, "columns", retyped)
	}
	return nil
}

// addColumn adds c after the column named after ("" to append). A column
// of the table's sorting key is added with MODIFY ORDER BY in the same
// statement (the only way both generations extend a sorting key; such a
// column must have no DEFAULT), so that, say, a SummingMergeTree never
// merges rows that differ in it. 18.16 has no ADD COLUMN IF NOT EXISTS,
// so on old servers a failure is checked against system.columns: another
// sink migrating at the same time may have added the column first.
func addColumn(ctx context.Context, conn driver.Conn, database string, table schemas.Table,
	c schemas.Column, after string, v schemas.ServerVersion, sortingKey bool) error {
	name := schemas.QualifiedName(database, table.Name)
	ifNotExists := ""
	if v.Modern() {
		ifNotExists = "IF NOT EXISTS "
	}
	stmt := "ALTER TABLE " + name + " ADD COLUMN " + ifNotExists + c.Definition(v)
	if after != "" {
		stmt += " AFTER " + schemas.QuoteIdent(after)
	}
	if sortingKey {
		// Only possible when the table's key is the description's
		// without the new column; otherwise add the column alone.
		if err := conn.Exec(ctx, stmt+", MODIFY ORDER BY "+table.OrderBy); err == nil {
			return nil
		}
	}
	err := conn.Exec(ctx, stmt)
	if err == nil {
		return nil
	}
	if now, cerr := serverColumns(ctx, conn, database, table.Name); cerr == nil {
		if _, ok := now[c.Name]; ok {
			return nil
		}
	}
	return fmt.Errorf("add column %s to %s: %w", c.Name, name, err)
}

// serverColumns returns the server's columns of database.table, name to
// SQL type; empty when the table does not exist.
func serverColumns(ctx context.Context, conn driver.Conn, database, table string) (map[string]string, error) {
	rows, err := conn.Query(ctx,
		"SELECT name, type FROM system.columns WHERE database = ? AND table = ?", database, table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", schemas.QualifiedName(database, table), err)
	}
	defer rows.Close()
	columns := make(map[string]string)
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, fmt.Errorf("read columns of %s: %w", schemas.QualifiedName(database, table), err)
		}
		columns[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", schemas.QualifiedName(database, table), err)
	}
	return columns, nil
}

// inSortingKey reports whether column name appears in table's ORDER BY.
func inSortingKey(table schemas.Table, name string) bool {
	return containsWord(table.OrderBy, name)
}
