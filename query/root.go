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

	noRollup bool // tests: read flows only

	// exactDays holds the midnights (Unix seconds, uint32) of the
	// rollup's first days found to hold exactly the day's flows.
	exactDays sync.Map
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

// splitWindow cuts w into days read from the daily rollup and the rest,
// read from flows. Days strictly inside w after the rollup's first day are
// read from the rollup. The rollup's first day (which may be partial: the
// view fills only what is inserted after it exists) and the day of w's
// start are read from it too when the rollup's count of that day equals
// the count of flows of that day inside w (so the view saw the whole day
// and no flow of the day lies before w); the day of w's end, when it is
// not one of those, when flows has no row of that day from w's end on
// (the usual case for a window ending now). Other parts of w are read
// from flows. useRollup false, an empty or missing rollup, or a window
// without such a day reads flows only. Day boundaries are the server's
// (toDate), as the view's are.
func (r *Reader) splitWindow(ctx context.Context, w Window, useRollup bool) (split, error) {
	all := split{raw: w.where("time_received")}
	if !useRollup || r.noRollup || !w.To.After(w.From) {
		return all, nil
	}
	var n uint64
	var first, firstNext, fromDay, fromNext, toDay, toNext uint32
	q := fmt.Sprintf(`SELECT toUInt64(count()), toUInt32(toDateTime(min(day))), toUInt32(toDateTime(min(day) + 1)),
    toUInt32(toDateTime(toDate(toDateTime(%[1]d)))), toUInt32(toDateTime(toDate(toDateTime(%[1]d)) + 1)),
    toUInt32(toDateTime(toDate(toDateTime(%[2]d)))), toUInt32(toDateTime(toDate(toDateTime(%[2]d)) + 1))
FROM %[3]s`, w.From.Unix(), w.To.Unix(), r.table(schemas.AuditEdgesTable.Name))
	if err := r.conn.QueryRow(ctx, q).Scan(&n, &first, &firstNext, &fromDay, &fromNext, &toDay, &toNext); err != nil {
		if strings.Contains(err.Error(), "doesn't exist") || strings.Contains(err.Error(), "code: 60") {
			return all, nil // not migrated yet: flows only
		}
		return split{}, fmt.Errorf("query: rollup coverage: %w", err)
	}
	if n == 0 {
		return all, nil
	}
	from, to := uint32(w.From.Unix()), uint32(w.To.Unix())
	// [lo, hi) are the rollup's days, as the times of their midnights.
	lo, loNext := fromDay, fromNext
	if first > fromDay {
		lo, loNext = first, firstNext
	}
	hi := toDay
	if to > toDay {
		hi = toNext
	}
	if lo >= hi {
		return all, nil
	}
	// Each check is one SQL condition deciding whether a day is read from
	// the rollup: the rollup's count of the day against that of flows in
	// w, or no flow of the day after w.
	type check struct {
		start, next uint32
		sql         string
		whole       bool // compares the whole day: cacheable
	}
	var checks []check
	if lo == first || from > lo {
		a, b := max(lo, from), min(loNext, to)
		checks = append(checks, check{lo, loNext, fmt.Sprintf(`(SELECT toUInt64(countMerge(flows)) FROM %s WHERE day = toDate(toDateTime(%d))) =
    (SELECT toUInt64(count()) FROM %s WHERE time_received >= toDateTime(%d) AND time_received < toDateTime(%d))`,
			r.table(schemas.AuditEdgesTable.Name), lo, r.table("flows"), a, b), a == lo && b == loNext})
	}
	if to > toDay && (toDay != lo || len(checks) == 0) {
		checks = append(checks, check{toDay, toNext, fmt.Sprintf(`(SELECT toUInt64(count()) FROM %s WHERE time_received >= toDateTime(%d) AND time_received < toDateTime(%d)) = 0`,
			r.table("flows"), to, toNext), false})
	}
	var cols []string
	var asked []check
	for _, c := range checks {
		if c.whole {
			if _, ok := r.exactDays.Load(c.start); ok {
				continue
			}
		}
		cols = append(cols, "toUInt8("+c.sql+")")
		asked = append(asked, c)
	}
	if len(cols) > 0 {
		ok := make([]uint8, len(cols))
		dest := make([]any, len(ok))
		for i := range ok {
			dest[i] = &ok[i]
		}
		if err := r.conn.QueryRow(ctx, "SELECT "+strings.Join(cols, ",\n    ")).Scan(dest...); err != nil {
			return split{}, fmt.Errorf("query: rollup coverage: %w", err)
		}
		for i, c := range asked {
			if ok[i] == 1 {
				if c.whole {
					// A whole day once exact stays so: flows and the
					// view gain its late rows together. (An inexact
					// one is asked again: it may be an insert under
					// way, in flows and not yet in the rollup.)
					r.exactDays.Store(c.start, true)
				}
				continue
			}
			// Not exact: that day's part of w from flows.
			if c.start == lo {
				lo = c.next
			}
			if c.next == hi {
				hi = c.start
			}
		}
		if lo >= hi {
			return all, nil
		}
	}
	var raw []string
	if from < lo {
		raw = append(raw, fmt.Sprintf("(time_received >= toDateTime(%d) AND time_received < toDateTime(%d))", from, lo))
	}
	if hi < to {
		raw = append(raw, fmt.Sprintf("(time_received >= toDateTime(%d) AND time_received < toDateTime(%d))", hi, to))
	}
	sp := split{rollup: fmt.Sprintf("day >= toDate(toDateTime(%d)) AND day < toDate(toDateTime(%d))", lo, hi)}
	if len(raw) > 0 {
		sp.raw = "(" + strings.Join(raw, " OR ") + ")"
	}
	return sp, nil
}
