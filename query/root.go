// Package query is the read side of ClickHouse: one typed function per
// analytical question the audit layer, reports and the console ask. SQL here
// runs on both server generations (DESIGN.md, "Two ClickHouse generations"):
// addresses are read through IPv6NumToString, which accepts FixedString(16)
// and IPv6 alike, and time buckets use toStartOfHour and friends, never
// toStartOfInterval.
//
// Functions return rows sorted by a documented key, so the pure functions
// of audit/ that consume them give byte-identical output on re-runs.
package query

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowaudit/flowaudit/schemas"
)

// Reader answers questions about one flowaudit database. It is safe for
// concurrent use.
type Reader struct {
	conn driver.Conn
	db   string

	once    sync.Once
	columns map[string]bool // columns of flows, read once
	colErr  error
}

// New returns a Reader over database on conn. The connection stays owned by
// the caller.
func New(conn driver.Conn, database string) *Reader {
	return &Reader{conn: conn, db: database}
}

// Window is the time range [From, To) of a question, on time_received.
type Window struct {
	From, To time.Time
}

// Since returns the window of the last d before now, both ends truncated to
// the second.
func Since(d time.Duration, now time.Time) Window {
	to := now.Truncate(time.Second)
	return Window{From: to.Add(-d), To: to}
}

func (w Window) where(column string) string {
	return fmt.Sprintf("%s >= toDateTime(%d) AND %s < toDateTime(%d)", column, w.From.Unix(), column, w.To.Unix())
}

func (r *Reader) table(name string) string { return schemas.QualifiedName(r.db, name) }

// flowColumns returns the columns of the flows table, read once: columns
// other stages add later (service_side, service_port) are used when there.
func (r *Reader) flowColumns(ctx context.Context) (map[string]bool, error) {
	r.once.Do(func() {
		rows, err := r.conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = 'flows'", r.db)
		if err != nil {
			r.colErr = fmt.Errorf("query: list columns of %s: %w", r.table("flows"), err)
			return
		}
		defer rows.Close()
		r.columns = map[string]bool{}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				r.colErr = err
				return
			}
			r.columns[n] = true
		}
		r.colErr = rows.Err()
		if r.colErr == nil && len(r.columns) == 0 {
			r.colErr = fmt.Errorf("query: table %s does not exist; run flowaudit migrate", r.table("flows"))
		}
	})
	return r.columns, r.colErr
}

// replyExpr is the SQL condition "the source end of this flow offers the
// service", i.e. the flow is a reply. The enricher's service_side column
// decides when it is set; flows written before it existed (or left
// undecided) fall back to "the lower port is the service", the rule that
// keeps ephemeral client ports out of edges.
func (r *Reader) replyExpr(ctx context.Context) (string, error) {
	cols, err := r.flowColumns(ctx)
	if err != nil {
		return "", err
	}
	fallback := "(proto IN (6, 17, 132) AND src_port < dst_port)"
	if cols["service_side"] {
		return "if(service_side = '', " + fallback + ", service_side = 'src')", nil
	}
	return fallback, nil
}

// quoteList renders values as a list of SQL string literals.
func quoteList(values []string) string {
	r := strings.NewReplacer("\\", "\\\\", "'", "\\'")
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = "'" + r.Replace(v) + "'"
	}
	return strings.Join(out, ", ")
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("query: address %q from ClickHouse: %w", s, err)
	}
	return a.Unmap(), nil
}
