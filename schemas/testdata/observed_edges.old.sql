CREATE TABLE IF NOT EXISTS flowaudit.observed_edges
(
    src_segment String,
    dst_segment String,
    dst_port UInt16,
    proto UInt8,
    src_identity String,
    first_seen AggregateFunction(min, DateTime),
    last_seen AggregateFunction(max, DateTime),
    flows AggregateFunction(count)
)
ENGINE = AggregatingMergeTree
ORDER BY (src_segment, dst_segment, dst_port, proto, src_identity)
