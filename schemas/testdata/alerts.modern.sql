CREATE TABLE IF NOT EXISTS flowaudit.alerts
(
    alert_id String,
    time DateTime64(3) COMMENT 'when the finding was made (event time)',
    kind LowCardinality(String),
    severity LowCardinality(String) COMMENT 'low, medium, high or critical',
    src_addr IPv6,
    dst_addr IPv6,
    src_segment LowCardinality(String),
    dst_segment LowCardinality(String),
    src_identity LowCardinality(String),
    dst_port UInt16,
    proto UInt8,
    first_seen DateTime64(3),
    last_seen DateTime64(3),
    count UInt64,
    bytes UInt64,
    summary String,
    evidence String COMMENT 'JSON' CODEC(ZSTD(1)),
    version UInt64 COMMENT 'last_seen in Unix ns: the highest wins on merge'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id
TTL toDateTime(time) + INTERVAL 90 DAY
SETTINGS index_granularity = 8192
COMMENT 'Detector findings; one row per alert_id after merges'
