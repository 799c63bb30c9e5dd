CREATE TABLE IF NOT EXISTS flowaudit.console_edges_1m
(
    minute DateTime,
    client_segment LowCardinality(String) COMMENT 'segment of the end that did not offer the service',
    server_segment LowCardinality(String) COMMENT 'segment of the end that offered the service',
    service_port UInt16 COMMENT 'port of the serving end; the destination port when the side is unknown',
    proto UInt8,
    verdict LowCardinality(String),
    staged_verdict LowCardinality(String),
    client_identity LowCardinality(String) COMMENT 'user or service account of the client end',
    rule LowCardinality(String),
    staged_rule LowCardinality(String),
    client_workload LowCardinality(String),
    server_workload LowCardinality(String),
    flows UInt64,
    bytes UInt64
)
ENGINE = SummingMergeTree((flows, bytes))
PARTITION BY toYYYYMMDD(minute)
ORDER BY (minute, client_segment, server_segment, service_port, proto, verdict, staged_verdict, client_identity, rule, staged_rule, client_workload, server_workload)
TTL toDateTime(minute) + INTERVAL 90 DAY
SETTINGS index_granularity = 8192
COMMENT 'Per-minute segment edges in the service orientation for the console, filled from flows'
