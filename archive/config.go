// Package archive writes flows and access events as zstd Parquet files in
// a Hive layout, beside ClickHouse, for the months of audit history beyond
// ClickHouse's retention (PCI DSS 10.5.1: twelve months, three of them
// immediately available):
//
//	DIR/table=flows/date=YYYY-MM-DD/hour=HH/part-<instance>-<offset>.parquet
//	DIR/table=access_events/date=YYYY-MM-DD/hour=HH/part-<instance>-<offset>.parquet
//
// The archive is its own consumer group, so an archive outage never
// stalls ClickHouse inserts and a ClickHouse outage never stalls the
// archive. Each input partition is one writer (<instance> is "p" and the
// partition number): it holds one open file per partition, for the hour
// (by receipt time) of the records it reads, and closes it when a record
// of another hour arrives, when it reaches archive.max_rows rows, when
// the partition is revoked or when the process stops. A file is written,
// fsynced and renamed into place before the offsets it covers are
// committed. Its name is the offset of its first record, so after a crash
// the records read again make the very same file and replace it: a
// restart resumes without gaps or duplicates.
package archive

import (
	"errors"
	"fmt"
	"time"
)

// Configuration is the archive section of the configuration file.
type Configuration struct {
	// Dir is where the Parquet files go; "" disables the archive.
	Dir string `yaml:"dir"`
	// Retention deletes hour partitions older than this (0 keeps
	// everything). The default, 396 days, keeps twelve months with margin.
	Retention time.Duration `yaml:"retention"`
	// ConsumerGroup is the archive's own Kafka consumer group.
	ConsumerGroup string `yaml:"consumer_group"`
	// MaxRows closes a file early at this many rows (memory is bounded
	// by the row groups, rowGroupRows, not by this).
	MaxRows int `yaml:"max_rows"`
}

// DefaultConfiguration returns the defaults: disabled, 9504h retention.
func DefaultConfiguration() Configuration {
	return Configuration{Retention: 9504 * time.Hour, ConsumerGroup: "flowaudit-archive", MaxRows: 2_000_000}
}

// Validate checks the configuration; errors name the key.
func (c Configuration) Validate() error {
	var errs []error
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("archive.retention: must be 0 (keep forever) or positive, got %s", c.Retention))
	} else if c.Retention > 0 && c.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("archive.retention: %s is shorter than the one-hour partitions; use at least 1h (default 9504h = 396 days)", c.Retention))
	}
	if c.ConsumerGroup == "" {
		errs = append(errs, errors.New("archive.consumer_group: must not be empty (default flowaudit-archive)"))
	}
	if c.MaxRows < 1000 {
		errs = append(errs, fmt.Errorf("archive.max_rows: %d is too small; use at least 1000 (default 2000000)", c.MaxRows))
	}
	return errors.Join(errs...)
}
