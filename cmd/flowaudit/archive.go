package main

import (
	"errors"
	"io"
	"log/slog"

	"github.com/flowaudit/flowaudit/archive"
	"github.com/flowaudit/flowaudit/cmd/flowaudit/internal/config"
)

func cmdArchive(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("archive", "[--config FILE] [--check]", `
Run the Parquet archive alone: consume the enriched flows topic and the
access topic in consumer group archive.consumer_group and write zstd
Parquet files under archive.dir in a Hive layout
(table=flows/date=YYYY-MM-DD/hour=HH/part-p<partition>-<offset>.parquet),
one file per input partition and hour, each written and fsynced before
its offsets are committed; hour partitions older than archive.retention
are deleted. "flowaudit run" runs it too when archive.dir is set. Its own
consumer group: an archive outage never stalls the ClickHouse sink.`, stderr)
	var sf stageFlags
	sf.register(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	return runStages(sf, stages{archive: true}, stdout, stderr)
}

// newArchive builds the archive when the stages include it and
// archive.dir is set; the archive command alone requires archive.dir.
func newArchive(st stages, cfg config.Configuration, logger *slog.Logger) (*archive.Component, error) {
	if !st.archive {
		return nil, nil
	}
	if cfg.Archive.Dir == "" {
		if st == (stages{archive: true}) {
			return nil, errors.New("archive.dir: empty; set it to the folder the Parquet files go to")
		}
		return nil, nil
	}
	return archive.New(logger, cfg.Archive, cfg.Kafka)
}
