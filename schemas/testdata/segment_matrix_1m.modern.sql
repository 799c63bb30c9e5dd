CREATE TABLE IF NOT EXISTS flowaudit.segment_matrix_1m
(
    minute DateTime,
    src_segment LowCardinality(String),
    dst_segment LowCardinality(String),
    dst_port UInt16,
    proto UInt8,
    verdict LowCardinality(String),
    staged_verdict LowCardinality(String) COMMENT 'the verdict had the staged rules been enforced too',
    flows UInt64,
    bytes UInt64,
    packets UInt64
)
ENGINE = SummingMergeTree((flows, bytes, packets))
PARTITION BY toYYYYMMDD(minute)
ORDER BY (minute, src_segment, dst_segment, dst_port, proto, verdict, staged_verdict)
TTL toDateTime(minute) + INTERVAL 90 DAY
SETTINGS index_granularity = 8192
COMMENT 'Per-minute segment matrix, filled from flows'
