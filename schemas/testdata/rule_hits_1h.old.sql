CREATE TABLE IF NOT EXISTS flowaudit.rule_hits_1h
(
    hour DateTime,
    rule String COMMENT 'the rule that decided verdict; empty when none did',
    verdict String,
    staged_rule String,
    staged_verdict String,
    client_segment String COMMENT 'segment of the end that did not offer the service',
    server_segment String COMMENT 'segment of the end that offered the service',
    client_workload String,
    server_workload String,
    client_identity String COMMENT 'user or service account of the client end',
    service_port UInt16 COMMENT 'port of the serving end; the destination port when the side is unknown',
    proto UInt8,
    service_side String COMMENT 'service_side of the flows: dst, src (replies, swapped) or empty (unknown, not swapped)',
    flows UInt64,
    bytes UInt64,
    last_hit AggregateFunction(max, DateTime) COMMENT 'latest time_received; read with maxMerge',
    src_segment String ALIAS client_segment,
    dst_segment String ALIAS server_segment,
    dst_port UInt16 ALIAS service_port
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, rule, verdict, client_segment, server_segment, service_port, proto, staged_rule, staged_verdict, client_workload, server_workload, client_identity, service_side)
