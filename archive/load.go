package archive

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/apache/arrow-go/v18/arrow"

	"github.com/flowaudit/flowaudit/schemas"
)

// LoadSQLVersion is the DDL generation Load creates its tables with:
// Debian's 18.16 one, whose types are the archive's own (FixedString(16)
// addresses, DateTime seconds, String), so a copy of a table from any
// server (CopyTables) and the rows of the Parquet files go in without
// conversion, and the query package's SQL, which both generations run,
// reads them as it reads ClickHouse.
var LoadSQLVersion = schemas.ServerVersion{Major: 18, Minor: 16}

// Archived is the tables the archive holds, with the Parquet schema of
// each.
var Archived = map[string]*arrow.Schema{TableFlows: flowSchema, TableAccess: accessSchema}

// LoadStats is what Load read.
type LoadStats struct {
	Flows, AccessEvents uint64
}

// Load creates database db in the modern ClickHouse engine behind conn
// (an embedded engine that reads local files: internal/chengine) and
// fills it from the archive under dir, so that the query package's SQL
// runs over the archive unchanged. Every table of schemas.Tables() is
// created (LoadSQLVersion's DDL) with its materialized views; then flows
// and access_events are filled from every Parquet file of the archive
// through file(), which fills the rollups (rule_hits_1h, observed_edges,
// audit_edges_1d...) exactly as the sink's inserts fill ClickHouse's.
// The tables the archive does not hold (alerts, policy_versions,
// probe_results, reports) stay empty: CopyTables fills them.
//
// The engine holds a copy of the archive's rows while db exists: drop it
// when done.
func Load(ctx context.Context, conn driver.Conn, dir, db string) (LoadStats, error) {
	for _, sql := range schemas.DDL(db, LoadSQLVersion, 0) {
		if err := conn.Exec(ctx, sql); err != nil {
			return LoadStats{}, fmt.Errorf("archive: create the tables to read the archive into: %w", err)
		}
	}
	var st LoadStats
	for _, t := range []struct {
		table schemas.Table
		n     *uint64
	}{{schemas.FlowsTable, &st.Flows}, {schemas.AccessEventsTable, &st.AccessEvents}} {
		sql := LoadSQL(dir, db, t.table)
		if err := conn.Exec(ctx, sql); err != nil {
			return st, fmt.Errorf("archive: read %s from %s: %w", t.table.Name, dir, err)
		}
		if err := conn.QueryRow(ctx, "SELECT toUInt64(count()) FROM "+schemas.QualifiedName(db, t.table.Name)).Scan(t.n); err != nil {
			return st, fmt.Errorf("archive: count %s: %w", t.table.Name, err)
		}
	}
	return st, nil
}

// LoadSQL returns the INSERT ... SELECT ... FROM file() that copies
// every Parquet file of table (flows or access_events) under dir into
// db's table: the columns both have, the rest taking their defaults.
func LoadSQL(dir, db string, table schemas.Table) string {
	schema := Archived[table.Name]
	var cols []string
	for _, c := range table.Columns {
		if c.Alias != "" {
			continue
		}
		if _, ok := schema.FieldsByName(c.Name); ok {
			cols = append(cols, schemas.QuoteIdent(c.Name))
		}
	}
	list := strings.Join(cols, ", ")
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM file(%s, Parquet, %s)",
		schemas.QualifiedName(db, table.Name), list, list, sqlString(Glob(dir, table.Name)), sqlString(Structure(schema)))
}

// Glob is the file() pattern of every Parquet file of table under dir.
func Glob(dir, table string) string {
	return filepath.Join(dir, "table="+table, "date=*", "hour=*", "*.parquet")
}

// Structure returns schema as a ClickHouse structure (name type, ...),
// so that file() reads the archive without inferring it (and reads no
// file as no rows).
func Structure(schema *arrow.Schema) string {
	out := make([]string, schema.NumFields())
	for i, f := range schema.Fields() {
		out[i] = schemas.QuoteIdent(f.Name) + " " + clickHouseType(f.Type)
	}
	return strings.Join(out, ", ")
}

func clickHouseType(t arrow.DataType) string {
	switch t := t.(type) {
	case *arrow.FixedSizeBinaryType:
		return fmt.Sprintf("FixedString(%d)", t.ByteWidth)
	case *arrow.TimestampType:
		return "DateTime64(3, 'UTC')"
	}
	switch t.ID() {
	case arrow.STRING:
		return "String"
	case arrow.UINT8:
		return "UInt8"
	case arrow.UINT16:
		return "UInt16"
	case arrow.UINT32:
		return "UInt32"
	case arrow.UINT64:
		return "UInt64"
	case arrow.INT32:
		return "Int32"
	case arrow.INT64:
		return "Int64"
	}
	panic("archive: no ClickHouse type for " + t.String())
}

func sqlString(s string) string {
	return "'" + strings.NewReplacer("\\", "\\\\", "'", "\\'").Replace(s) + "'"
}

// NotArchived is the tables Load leaves empty: the archive holds flows
// and access events only. They are small and ClickHouse keeps them
// (alerts, policy versions, probe results, report index): CopyTable
// copies them from there.
var NotArchived = []schemas.Table{schemas.AlertsTable, schemas.PolicyVersionsTable, schemas.ProbeResultsTable, schemas.ReportsTable}

// copyChunk is the rows per INSERT of CopyTable.
const copyChunk = 5000

// CopyTable copies table's rows from database fromDB on a ClickHouse
// server (either generation) into the table of the same name in db of the
// engine behind to (created by Load). Values travel as text both ends
// parse alike: times as Unix seconds (the old generation's precision),
// strings and addresses in hex, numbers in decimal. It returns the rows
// copied.
func CopyTable(ctx context.Context, from driver.Conn, fromDB string, to driver.Conn, db string, table schemas.Table) (int, error) {
	var get, put, names []string
	for _, c := range table.Columns {
		if c.Alias != "" || c.Type == schemas.TypeAggregate {
			continue
		}
		q := schemas.QuoteIdent(c.Name)
		names = append(names, q)
		switch c.Type {
		case schemas.TypeDateTime, schemas.TypeDateTime64ms:
			get, put = append(get, "toString(toUInt32(toDateTime("+q+")))"), append(put, "toDateTime(%s)")
		case schemas.TypeDate:
			get, put = append(get, "toString(toUInt32(toDateTime("+q+")))"), append(put, "toDate(toDateTime(%s))")
		case schemas.TypeAddr:
			get, put = append(get, "hex("+q+")"), append(put, "toFixedString(unhex('%s'), 16)")
		case schemas.TypeString, schemas.TypeLowString:
			get, put = append(get, "hex("+q+")"), append(put, "unhex('%s')")
		default:
			get, put = append(get, "toString("+q+")"), append(put, "%s")
		}
	}
	rows, err := from.Query(ctx, "SELECT "+strings.Join(get, ", ")+" FROM "+schemas.QualifiedName(fromDB, table.Name))
	if err != nil {
		return 0, fmt.Errorf("archive: read %s from ClickHouse: %w", table.Name, err)
	}
	defer rows.Close()
	head := "INSERT INTO " + schemas.QualifiedName(db, table.Name) + " (" + strings.Join(names, ", ") + ") VALUES "
	vals := make([]string, len(get))
	dest := make([]any, len(get))
	for i := range vals {
		dest[i] = &vals[i]
	}
	var b strings.Builder
	n, pending := 0, 0
	flush := func() error {
		if pending == 0 {
			return nil
		}
		err := to.Exec(ctx, b.String())
		b.Reset()
		pending = 0
		return err
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return n, fmt.Errorf("archive: read %s from ClickHouse: %w", table.Name, err)
		}
		if pending == 0 {
			b.WriteString(head)
		} else {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for i, v := range vals {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, put[i], v) // hex digits and decimal numbers only
		}
		b.WriteByte(')')
		n++
		if pending++; pending == copyChunk {
			if err := flush(); err != nil {
				return n, fmt.Errorf("archive: copy %s: %w", table.Name, err)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("archive: read %s from ClickHouse: %w", table.Name, err)
	}
	if err := flush(); err != nil {
		return n, fmt.Errorf("archive: copy %s: %w", table.Name, err)
	}
	return n, nil
}
