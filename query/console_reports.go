package query

import (
	"context"
	"fmt"
	"time"
)

// ReportRow is one evidence pack of the reports table.
type ReportRow struct {
	ID, Framework        string
	GeneratedAt          time.Time
	WindowFrom, WindowTo time.Time
	Path, SHA256         string
	Summary              string // JSON: report.json's summary
}

const reportColumns = "report_id, framework, generated_at, window_from, window_to, path, sha256, summary"

func scanReports(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}) ([]ReportRow, error) {
	var out []ReportRow
	for rows.Next() {
		var r ReportRow
		if err := rows.Scan(&r.ID, &r.Framework, &r.GeneratedAt, &r.WindowFrom, &r.WindowTo, &r.Path, &r.SHA256, &r.Summary); err != nil {
			return nil, err
		}
		r.GeneratedAt, r.WindowFrom, r.WindowTo = r.GeneratedAt.UTC(), r.WindowFrom.UTC(), r.WindowTo.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// Reports returns the packs generated within w, newest first (ties by
// id), at most limit.
func (r *Reader) Reports(ctx context.Context, w Window, limit int) ([]ReportRow, error) {
	rows, err := r.conn.Query(ctx, fmt.Sprintf(`SELECT %s FROM %s FINAL WHERE %s ORDER BY generated_at DESC, report_id LIMIT %d`,
		reportColumns, r.table("reports"), w.where("generated_at"), limit))
	if err != nil {
		return nil, fmt.Errorf("query: reports: %w", err)
	}
	defer rows.Close()
	out, err := scanReports(rows)
	if err != nil {
		return nil, fmt.Errorf("query: reports: %w", err)
	}
	return out, nil
}

// ReportByID returns one pack, or nil when there is none.
func (r *Reader) ReportByID(ctx context.Context, id string) (*ReportRow, error) {
	rows, err := r.conn.Query(ctx, fmt.Sprintf(`SELECT %s FROM %s FINAL WHERE report_id = %s ORDER BY generated_at DESC LIMIT 1`,
		reportColumns, r.table("reports"), quoteList([]string{id})))
	if err != nil {
		return nil, fmt.Errorf("query: report %s: %w", id, err)
	}
	defer rows.Close()
	out, err := scanReports(rows)
	if err != nil {
		return nil, fmt.Errorf("query: report %s: %w", id, err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return &out[0], nil
}
