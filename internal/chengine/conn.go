package chengine

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// Conn returns a driver.Conn over e for code that reads ClickHouse
// through clickhouse-go (the query package): Query and QueryRow run the
// statement with output format Native and decode the blocks with
// clickhouse-go's own column types, so Scan converts exactly as it does
// against a server; Exec runs a statement. Positional ? arguments take
// strings and integers. Nothing else of driver.Conn is provided.
func Conn(e Engine) driver.Conn { return &conn{e: e} }

type conn struct {
	driver.Conn
	e Engine
}

func (c *conn) Exec(_ context.Context, query string, args ...any) error {
	q, err := bindArgs(query, args)
	if err != nil {
		return err
	}
	_, err = c.e.Query(q, "TSV")
	return err
}

func (c *conn) Query(_ context.Context, query string, args ...any) (driver.Rows, error) {
	q, err := bindArgs(query, args)
	if err != nil {
		return nil, err
	}
	out, err := c.e.Query(q, "Native")
	if err != nil {
		return nil, err
	}
	r := &rows{}
	reader := chproto.NewReader(bytes.NewReader(out))
	for {
		b := proto.NewBlock()
		b.ServerContext.Timezone = time.Local
		if err := b.Decode(reader, 0); err != nil {
			if errors.Is(err, io.EOF) { // after the last block
				return r, nil
			}
			return nil, fmt.Errorf("chengine: decode Native result: %w", err)
		}
		r.blocks = append(r.blocks, b)
	}
}

func (c *conn) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	rs, err := c.Query(ctx, query, args...)
	return &row{rows: rs, err: err}
}

type rows struct {
	blocks   []*proto.Block
	bi, next int // current block, and the row Next moves to in it
}

func (r *rows) Next() bool {
	for r.bi < len(r.blocks) {
		if r.next < r.blocks[r.bi].Rows() {
			r.next++
			return true
		}
		r.bi++
		r.next = 0
	}
	return false
}

func (r *rows) Scan(dest ...any) error {
	b := r.blocks[r.bi]
	if len(dest) != len(b.Columns) {
		return fmt.Errorf("chengine: expected %d destination arguments in Scan, not %d", len(b.Columns), len(dest))
	}
	for i, d := range dest {
		if err := b.Columns[i].ScanRow(d, r.next-1); err != nil {
			return fmt.Errorf("chengine: column %s: %w", b.ColumnsNames()[i], err)
		}
	}
	return nil
}

func (r *rows) ScanStruct(any) error { return fmt.Errorf("chengine: ScanStruct is not supported") }
func (r *rows) Totals(...any) error  { return fmt.Errorf("chengine: Totals is not supported") }
func (r *rows) Close() error         { return nil }
func (r *rows) Err() error           { return nil }
func (r *rows) HasData() bool        { return len(r.blocks) > 0 && r.blocks[0].Rows() > 0 }
func (r *rows) Columns() []string    { return r.first().ColumnsNames() }
func (r *rows) first() *proto.Block  { return r.blocks[0] }
func (r *rows) ColumnTypes() []driver.ColumnType {
	if len(r.blocks) == 0 {
		return nil
	}
	var out []driver.ColumnType
	for _, c := range r.first().Columns {
		out = append(out, columnType{c})
	}
	return out
}

type columnType struct{ c column.Interface }

func (t columnType) Name() string             { return t.c.Name() }
func (t columnType) Nullable() bool           { return strings.HasPrefix(string(t.c.Type()), "Nullable(") }
func (t columnType) ScanType() reflect.Type   { return t.c.ScanType() }
func (t columnType) DatabaseTypeName() string { return string(t.c.Type()) }

type row struct {
	rows driver.Rows
	err  error
}

func (r *row) Err() error { return r.err }

func (r *row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	if !r.rows.Next() {
		return sql.ErrNoRows
	}
	return r.rows.Scan(dest...)
}

func (r *row) ScanStruct(any) error { return fmt.Errorf("chengine: ScanStruct is not supported") }

// bindArgs replaces each ? outside string literals with the next argument
// as an SQL literal.
func bindArgs(query string, args []any) (string, error) {
	if len(args) == 0 {
		return query, nil
	}
	var b strings.Builder
	inString := false
	n := 0
	for i := 0; i < len(query); i++ {
		ch := query[i]
		switch {
		case inString && ch == '\\' && i+1 < len(query):
			b.WriteByte(ch)
			i++
			ch = query[i]
		case ch == '\'':
			inString = !inString
		case ch == '?' && !inString:
			if n >= len(args) {
				return "", fmt.Errorf("chengine: more ? than the %d arguments in %q", len(args), query)
			}
			lit, err := literal(args[n])
			if err != nil {
				return "", err
			}
			n++
			b.WriteString(lit)
			continue
		}
		b.WriteByte(ch)
	}
	if n != len(args) {
		return "", fmt.Errorf("chengine: %d arguments for %d ? in %q", len(args), n, query)
	}
	return b.String(), nil
}

func literal(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return "'" + strings.NewReplacer("\\", "\\\\", "'", "\\'").Replace(v) + "'", nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case uint64:
		return strconv.FormatUint(v, 10), nil
	case uint32:
		return strconv.FormatUint(uint64(v), 10), nil
	case uint16:
		return strconv.FormatUint(uint64(v), 10), nil
	}
	return "", fmt.Errorf("chengine: argument of type %T is not supported", v)
}
