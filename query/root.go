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
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowaudit/flowaudit/schemas"
)

// Reader answers questions about one flowaudit database. It is safe for
// concurrent use.
type Reader struct {
	conn driver.Conn
	db   string

	noRollup bool // tests: read flows only
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

// split is a window cut into the part read from flows (raw, a WHERE
// condition on time_received, "" for none) and the whole days read from
// the daily rollup (a WHERE condition on day, "" for none).
type split struct{ raw, rollup string }

// splitWindow cuts w into whole days after the rollup's first day (which
// may be partial: the view fills only what is inserted after it exists),
// read from the rollup, and the rest, read from flows. useRollup false, an
// empty or missing rollup, or a window without a whole day reads flows
// only. Day boundaries are the server's (toDate), as the view's are.
func (r *Reader) splitWindow(ctx context.Context, w Window, useRollup bool) (split, error) {
	all := split{raw: w.where("time_received")}
	if !useRollup || r.noRollup {
		return all, nil
	}
	var n uint64
	var t1, t2 uint32
	q := fmt.Sprintf(`SELECT toUInt64(count()),
    toUInt32(toDateTime(greatest(toDate(toDateTime(%d)) + 1, min(day) + 1))),
    toUInt32(toDateTime(toDate(toDateTime(%d))))
FROM %s`, w.From.Unix(), w.To.Unix(), r.table(schemas.AuditEdgesTable.Name))
	if err := r.conn.QueryRow(ctx, q).Scan(&n, &t1, &t2); err != nil {
		if strings.Contains(err.Error(), "doesn't exist") || strings.Contains(err.Error(), "code: 60") {
			return all, nil // not migrated yet: flows only
		}
		return split{}, fmt.Errorf("query: rollup coverage: %w", err)
	}
	if n == 0 || t1 >= t2 {
		return all, nil
	}
	return split{
		raw: fmt.Sprintf("((time_received >= toDateTime(%d) AND time_received < toDateTime(%d)) OR (time_received >= toDateTime(%d) AND time_received < toDateTime(%d)))",
			w.From.Unix(), t1, t2, w.To.Unix()),
		rollup: fmt.Sprintf("day >= toDate(toDateTime(%d)) AND day < toDate(toDateTime(%d))", t1, t2),
	}, nil
}
