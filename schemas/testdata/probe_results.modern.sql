CREATE TABLE IF NOT EXISTS flowaudit.probe_results
(
    time DateTime64(3) COMMENT 'when the attempt started' CODEC(Delta, ZSTD(1)),
    run_id String COMMENT 'one probe run; its start time and prober',
    prober LowCardinality(String) COMMENT 'host name of the prober',
    src_addr IPv6 COMMENT 'local address of the attempt',
    src_segment LowCardinality(String),
    dst_addr IPv6,
    dst_segment LowCardinality(String),
    dst_workload LowCardinality(String) DEFAULT '',
    dst_port UInt16 COMMENT '0 for ICMP echo',
    proto UInt8,
    expected LowCardinality(String) COMMENT 'allow or deny, from the policy',
    observed LowCardinality(String) COMMENT 'open, closed, filtered or error',
    result LowCardinality(String) COMMENT 'pass, breach or blocked',
    rule LowCardinality(String) DEFAULT '' COMMENT 'the rule that allows it; \'\' when denied',
    rtt_ms UInt32 COMMENT 'time to the answer (or to the timeout)',
    detail String DEFAULT '' COMMENT 'the error of an attempt that observed error'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (toStartOfHour(time), run_id, dst_segment, dst_addr, dst_port, proto)
SETTINGS index_granularity = 8192
COMMENT 'Active segmentation tests, one row per attempt'
