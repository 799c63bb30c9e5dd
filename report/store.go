package report

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowaudit/flowaudit/schemas"
)

// Store indexes a written pack in database.reports: its id, framework,
// times, directory, manifest hash and summary. Both server generations
// take the same row (no generation-specific column types).
func Store(ctx context.Context, conn driver.Conn, database string, p *Pack, w *Written) error {
	summary, err := json.Marshal(p.Report.Summary)
	if err != nil {
		return err
	}
	batch, err := conn.PrepareBatch(ctx, schemas.ReportsTable.InsertSQL(database))
	if err != nil {
		return fmt.Errorf("report: store in reports: %w", err)
	}
	r := p.Report
	if err := batch.Append(r.ReportID, r.Framework, r.GeneratedAt, r.Window.From, r.Window.To, w.Dir, w.ManifestSHA256, string(summary)); err != nil {
		_ = batch.Abort()
		return fmt.Errorf("report: store in reports: %w", err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("report: store in reports: %w", err)
	}
	return nil
}
