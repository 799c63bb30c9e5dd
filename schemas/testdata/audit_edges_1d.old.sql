CREATE TABLE IF NOT EXISTS flowaudit.audit_edges_1d
(
    day Date,
    src_addr FixedString(16),
    dst_addr FixedString(16),
    src_port_key UInt16 COMMENT 'src_port, or 32768 for a client port >= 32768',
    dst_port_key UInt16 COMMENT 'dst_port, or 32768 for a client port >= 32768',
    proto UInt8,
    service_side String COMMENT 'as in flows: dst, src or empty',
    src_identity String,
    dst_identity String,
    verdict String,
    rule String,
    flows AggregateFunction(count),
    bytes AggregateFunction(sum, UInt64),
    first_seen AggregateFunction(min, DateTime) COMMENT 'flow time (start, else end, else receipt)',
    last_seen AggregateFunction(max, DateTime)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, src_addr, dst_addr, src_port_key, dst_port_key, proto, service_side, src_identity, dst_identity, verdict, rule)
