CREATE TABLE IF NOT EXISTS flowaudit.alerts
(
    alert_id String,
    time DateTime COMMENT 'when the finding was made (event time)',
    kind String,
    severity String COMMENT 'low, medium, high or critical',
    src_addr FixedString(16),
    dst_addr FixedString(16),
    src_segment String,
    dst_segment String,
    src_identity String,
    dst_port UInt16,
    proto UInt8,
    first_seen DateTime,
    last_seen DateTime,
    count UInt64,
    bytes UInt64,
    summary String,
    evidence String COMMENT 'JSON',
    version UInt64 COMMENT 'last_seen in Unix ns: the highest wins on merge'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id
