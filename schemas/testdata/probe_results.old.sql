CREATE TABLE IF NOT EXISTS flowaudit.probe_results
(
    time DateTime COMMENT 'when the attempt started',
    run_id String COMMENT 'one probe run; its start time and prober',
    prober String COMMENT 'host name of the prober',
    src_addr FixedString(16) COMMENT 'local address of the attempt',
    src_segment String,
    dst_addr FixedString(16),
    dst_segment String,
    dst_workload String DEFAULT '',
    dst_port UInt16 COMMENT '0 for ICMP echo',
    proto UInt8,
    expected String COMMENT 'allow or deny, from the policy',
    observed String COMMENT 'open, closed, filtered or error',
    result String COMMENT 'pass, breach or blocked',
    rule String DEFAULT '' COMMENT 'the rule that allows it; \'\' when denied',
    rtt_ms UInt32 COMMENT 'time to the answer (or to the timeout)',
    detail String DEFAULT '' COMMENT 'the error of an attempt that observed error'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (toStartOfHour(time), run_id, dst_segment, dst_addr, dst_port, proto)
