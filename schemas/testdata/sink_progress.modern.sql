CREATE TABLE IF NOT EXISTS flowaudit.sink_progress
(
    kafka_partition UInt16,
    source_partition UInt16,
    source_offset AggregateFunction(max, Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (kafka_partition, source_partition)
SETTINGS index_granularity = 8192
COMMENT 'Highest source offset in flows per input and source partition, filled from flows'
