CREATE TABLE IF NOT EXISTS flowaudit.flows
(
    time_received DateTime COMMENT 'when the collector read the datagram' CODEC(Delta, ZSTD(1)),
    time_start DateTime64(3) COMMENT 'first packet; epoch when not exported' CODEC(Delta, ZSTD(1)),
    time_end DateTime64(3) COMMENT 'last packet; epoch when not exported' CODEC(Delta, ZSTD(1)),
    flow_type LowCardinality(String) COMMENT 'netflow_v5, netflow_v9, ipfix or sflow',
    exporter IPv6 COMMENT 'source address of the datagram' CODEC(ZSTD(1)),
    observation_id UInt32 COMMENT 'v9 source id, IPFIX observation domain, sFlow sub-agent',
    sampling_rate UInt32 COMMENT '1-in-N; bytes and packets are not multiplied by it',
    src_addr IPv6 CODEC(ZSTD(1)),
    dst_addr IPv6 CODEC(ZSTD(1)),
    next_hop IPv6 CODEC(ZSTD(1)),
    src_port UInt16,
    dst_port UInt16,
    proto UInt8,
    bytes UInt64 COMMENT 'as exported (sampled)' CODEC(T64, ZSTD(1)),
    packets UInt64 COMMENT 'as exported (sampled)' CODEC(T64, ZSTD(1)),
    tcp_flags UInt8,
    ip_tos UInt8,
    in_if UInt32,
    out_if UInt32,
    src_as UInt32,
    dst_as UInt32,
    ether_type UInt16 COMMENT '0x0800 IPv4, 0x86dd IPv6',
    direction UInt8 COMMENT '0 ingress, 1 egress',
    src_segment LowCardinality(String) DEFAULT '',
    dst_segment LowCardinality(String) DEFAULT '',
    src_workload LowCardinality(String) DEFAULT '',
    dst_workload LowCardinality(String) DEFAULT '',
    src_identity LowCardinality(String) DEFAULT '',
    dst_identity LowCardinality(String) DEFAULT '',
    verdict LowCardinality(String) DEFAULT 'unknown' COMMENT 'allowed, violation, intra_segment or unknown',
    rule LowCardinality(String) DEFAULT '' COMMENT 'policy rule that decided the verdict',
    src_country LowCardinality(String) DEFAULT '' COMMENT 'ISO 3166 code from GeoIP',
    dst_country LowCardinality(String) DEFAULT '',
    fw_action LowCardinality(String) DEFAULT '' COMMENT 'what the exporting device did: forwarded, dropped or denied; empty when it did not say',
    src_addr_xlate IPv6 COMMENT 'source address after NAT; :: when not exported' CODEC(ZSTD(1)),
    dst_addr_xlate IPv6 COMMENT 'destination address after NAT; :: when not exported' CODEC(ZSTD(1)),
    src_port_xlate UInt16 COMMENT 'source port after NAPT; 0 when not exported',
    dst_port_xlate UInt16 COMMENT 'destination port after NAPT; 0 when not exported',
    staged_verdict LowCardinality(String) DEFAULT 'unknown' COMMENT 'the verdict had the staged rules been enforced too',
    staged_rule LowCardinality(String) DEFAULT '' COMMENT 'the rule that decided staged_verdict',
    service_side LowCardinality(String) DEFAULT '' COMMENT 'which end offers the service: dst, src (the flow is a reply) or empty when unknown',
    service_port UInt16 COMMENT 'port of the serving end; 0 when unknown',
    kafka_partition UInt16 COMMENT 'partition of the sink\'s input topic the row was read from',
    source_partition UInt16 DEFAULT 65535 COMMENT 'flows-topic partition the row came from (65535: the input record itself)',
    source_offset Int64 DEFAULT -1 COMMENT 'offset of that record; see sink_progress' CODEC(T64, ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time_received)
ORDER BY (toStartOfHour(time_received), src_segment, dst_segment, src_addr, time_received)
TTL toDateTime(time_received) + INTERVAL 90 DAY
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000
COMMENT 'One row per enriched flow (flowaudit.enriched.v1)'
