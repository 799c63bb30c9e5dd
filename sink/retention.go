package sink

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DropExpiredPartitions enforces retention on servers without TTL (before
// 23.8): it drops the daily partitions (toYYYYMMDD(time_received)) of
// database.flows whose whole day is older than now - retention. It returns
// the partitions dropped. Retention 0 keeps everything.
func DropExpiredPartitions(ctx context.Context, conn driver.Conn, database string, retention time.Duration, now time.Time) ([]string, error) {
	if retention <= 0 {
		return nil, nil
	}
	// A day's partition may go once its last second is past the cutoff.
	cutoff := now.UTC().Add(-retention)
	lastWholeDay, _ := strconv.Atoi(cutoff.AddDate(0, 0, -1).Format("20060102"))
	rows, err := conn.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = 'flows' AND active", database)
	if err != nil {
		return nil, fmt.Errorf("listing partitions of %s.flows: %w", database, err)
	}
	var expired []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return nil, err
		}
		if day, err := strconv.Atoi(p); err == nil && day <= lastWholeDay {
			expired = append(expired, p)
		}
	}
	rows.Close()
	var dropped []string
	for _, p := range expired {
		if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.flows DROP PARTITION %s", database, p)); err != nil {
			return dropped, fmt.Errorf("dropping partition %s of %s.flows: %w", p, database, err)
		}
		dropped = append(dropped, p)
	}
	return dropped, nil
}

// retentionLoop drops expired partitions hourly on servers without TTL.
func (c *Component) retentionLoop() {
	if c.version.Modern() || c.deps.ClickHouse.Retention <= 0 {
		return // modern servers expire rows by TTL
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
		dropped, err := DropExpiredPartitions(ctx, c.conn, c.deps.ClickHouse.Database, c.deps.ClickHouse.Retention, time.Now())
		cancel()
		if err != nil && c.ctx.Err() == nil {
			c.log.Warn("retention: cannot drop expired partitions", "err", err)
		}
		if len(dropped) > 0 {
			c.log.Info("retention: dropped expired daily partitions", "partitions", dropped, "retention", c.deps.ClickHouse.Retention)
		}
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
	}
}
