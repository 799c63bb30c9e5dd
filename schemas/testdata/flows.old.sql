CREATE TABLE IF NOT EXISTS flowaudit.flows
(
    time_received DateTime COMMENT 'when the collector read the datagram',
    time_start DateTime COMMENT 'first packet; epoch when not exported',
    time_end DateTime COMMENT 'last packet; epoch when not exported',
    flow_type String COMMENT 'netflow_v5, netflow_v9, ipfix or sflow',
    exporter FixedString(16) COMMENT 'source address of the datagram',
    observation_id UInt32 COMMENT 'v9 source id, IPFIX observation domain, sFlow sub-agent',
    sampling_rate UInt32 COMMENT '1-in-N; bytes and packets are not multiplied by it',
    src_addr FixedString(16),
    dst_addr FixedString(16),
    next_hop FixedString(16),
    src_port UInt16,
    dst_port UInt16,
    proto UInt8,
    bytes UInt64 COMMENT 'as exported (sampled)',
    packets UInt64 COMMENT 'as exported (sampled)',
    tcp_flags UInt8,
    ip_tos UInt8,
    in_if UInt32,
    out_if UInt32,
    src_as UInt32,
    dst_as UInt32,
    ether_type UInt16 COMMENT '0x0800 IPv4, 0x86dd IPv6',
    direction UInt8 COMMENT '0 ingress, 1 egress',
    src_segment String DEFAULT '',
    dst_segment String DEFAULT '',
    src_workload String DEFAULT '',
    dst_workload String DEFAULT '',
    src_identity String DEFAULT '',
    dst_identity String DEFAULT '',
    verdict String DEFAULT 'unknown' COMMENT 'allowed, violation, intra_segment or unknown',
    rule String DEFAULT '' COMMENT 'policy rule that decided the verdict',
    src_country String DEFAULT '' COMMENT 'ISO 3166 code from GeoIP',
    dst_country String DEFAULT ''
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time_received)
ORDER BY (toStartOfHour(time_received), src_segment, dst_segment, src_addr, time_received)
