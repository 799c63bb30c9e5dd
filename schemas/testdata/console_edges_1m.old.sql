CREATE TABLE IF NOT EXISTS flowaudit.console_edges_1m
(
    minute DateTime,
    client_segment String COMMENT 'segment of the end that did not offer the service',
    server_segment String COMMENT 'segment of the end that offered the service',
    service_port UInt16 COMMENT 'port of the serving end; the destination port when the side is unknown',
    proto UInt8,
    verdict String,
    staged_verdict String,
    client_identity String COMMENT 'user or service account of the client end',
    rule String,
    staged_rule String,
    client_workload String,
    server_workload String,
    flows UInt64,
    bytes UInt64
)
ENGINE = SummingMergeTree((flows, bytes))
PARTITION BY toYYYYMMDD(minute)
ORDER BY (minute, client_segment, server_segment, service_port, proto, verdict, staged_verdict, client_identity, rule, staged_rule, client_workload, server_workload)
