CREATE DATABASE IF NOT EXISTS flowaudit ON CLUSTER flowaudit_cluster;

CREATE TABLE IF NOT EXISTS flowaudit.flows_local ON CLUSTER flowaudit_cluster
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
    dst_country String DEFAULT '',
    fw_action String DEFAULT '' COMMENT 'what the exporting device did: forwarded, dropped or denied; empty when it did not say',
    src_addr_xlate FixedString(16) COMMENT 'source address after NAT; :: when not exported',
    dst_addr_xlate FixedString(16) COMMENT 'destination address after NAT; :: when not exported',
    src_port_xlate UInt16 COMMENT 'source port after NAPT; 0 when not exported',
    dst_port_xlate UInt16 COMMENT 'destination port after NAPT; 0 when not exported',
    staged_verdict String DEFAULT 'unknown' COMMENT 'the verdict had the staged rules been enforced too',
    staged_rule String DEFAULT '' COMMENT 'the rule that decided staged_verdict',
    service_side String DEFAULT '' COMMENT 'which end offers the service: dst, src (the flow is a reply) or empty when unknown',
    service_port UInt16 COMMENT 'port of the serving end; 0 when unknown',
    src_identity_source String DEFAULT '' COMMENT 'source that attributed src_identity (openvpn, radius, kerberos, windows, sshd, k8s_pods, inventory…), else that of src_device (dhcp)',
    dst_identity_source String DEFAULT '' COMMENT 'source that attributed dst_identity, else that of dst_device',
    src_device String DEFAULT '' COMMENT 'device behind src_addr: MAC or DUID and DHCP host name, Calling-Station-Id, namespace/pod',
    dst_device String DEFAULT '' COMMENT 'device behind dst_addr',
    kafka_partition UInt16 COMMENT 'partition of the sink\'s input topic the row was read from',
    source_partition UInt16 DEFAULT 65535 COMMENT 'flows-topic partition the row came from (65535: the input record itself)',
    source_offset Int64 DEFAULT -1 COMMENT 'offset of that record; see sink_progress'
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMMDD(time_received)
ORDER BY (toStartOfHour(time_received), src_segment, dst_segment, src_addr, time_received);

CREATE TABLE IF NOT EXISTS flowaudit.flows ON CLUSTER flowaudit_cluster AS flowaudit.flows_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'flows_local', kafka_partition);

CREATE TABLE IF NOT EXISTS flowaudit.access_events_local ON CLUSTER flowaudit_cluster
(
    time DateTime COMMENT 'when the access happened, from the log line',
    received DateTime COMMENT 'when flowaudit received the line',
    source String COMMENT 'sshd, nginx, apache, k8s_audit, gateway, json',
    host String COMMENT 'host that wrote the log line',
    user String,
    src_addr FixedString(16),
    src_port UInt16,
    dst_addr FixedString(16),
    dst_host String,
    dst_port UInt16,
    resource String,
    action String COMMENT 'login, logout, session_open, session_close, disconnect, or the verb',
    outcome String COMMENT 'success, failure, denied or unknown',
    session_id String,
    auth_method String,
    status UInt16 COMMENT 'HTTP status or Kubernetes response code; 0 when none',
    user_agent String,
    forwarded_for String COMMENT 'X-Forwarded-For chain of a web request, client first; empty for direct clients',
    peer_addr FixedString(16) COMMENT 'real address of the sender (syslog or HTTP peer); :: for tailed files',
    listener String COMMENT 'listener the event came through (udp://0.0.0.0:5514, https://…, file:///…)',
    trusted UInt8 DEFAULT 1 COMMENT '1 when the sender may bind identities (ingest.access.trusted_senders, http_token_hosts)',
    binding String COMMENT 'start, update or stop of a session binding of src_addr; empty: none',
    device String COMMENT 'device behind src_addr: MAC, DUID, Calling-Station-Id or namespace/pod',
    device_name String COMMENT 'the device\'s host name (DHCP client hostname)',
    expires DateTime COMMENT 'when the binding ends by itself (DHCP lease expiry); 1970-01-01: no expiry given',
    outer_addr FixedString(16) COMMENT 'where a tunnel session came from (OpenVPN real address); :: when none',
    labels String COMMENT 'Kubernetes pod labels, key=value sorted by key, comma-separated'
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMMDD(time)
ORDER BY (toStartOfHour(time), src_addr, time);

CREATE TABLE IF NOT EXISTS flowaudit.access_events ON CLUSTER flowaudit_cluster AS flowaudit.access_events_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'access_events_local', cityHash64(src_addr));

CREATE TABLE IF NOT EXISTS flowaudit.alerts_local ON CLUSTER flowaudit_cluster
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', version)
ORDER BY alert_id;

CREATE TABLE IF NOT EXISTS flowaudit.alerts ON CLUSTER flowaudit_cluster AS flowaudit.alerts_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'alerts_local', cityHash64(alert_id));

CREATE TABLE IF NOT EXISTS flowaudit.kafka_offsets_local ON CLUSTER flowaudit_cluster
(
    consumer_group String,
    topic String,
    partition UInt32,
    next_offset Int64 COMMENT 'offset of the first record not yet in ClickHouse',
    updated DateTime DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', next_offset)
ORDER BY (consumer_group, topic, partition);

CREATE TABLE IF NOT EXISTS flowaudit.kafka_offsets ON CLUSTER flowaudit_cluster AS flowaudit.kafka_offsets_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'kafka_offsets_local', cityHash64(consumer_group, topic, partition));

CREATE TABLE IF NOT EXISTS flowaudit.segment_matrix_1m_local ON CLUSTER flowaudit_cluster
(
    minute DateTime,
    src_segment String,
    dst_segment String,
    dst_port UInt16,
    proto UInt8,
    verdict String,
    staged_verdict String COMMENT 'the verdict had the staged rules been enforced too',
    flows UInt64,
    bytes UInt64,
    packets UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', (flows, bytes, packets))
PARTITION BY toYYYYMMDD(minute)
ORDER BY (minute, src_segment, dst_segment, dst_port, proto, verdict, staged_verdict);

CREATE TABLE IF NOT EXISTS flowaudit.segment_matrix_1m ON CLUSTER flowaudit_cluster AS flowaudit.segment_matrix_1m_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'segment_matrix_1m_local', rand());

CREATE TABLE IF NOT EXISTS flowaudit.observed_edges_local ON CLUSTER flowaudit_cluster
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
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (src_segment, dst_segment, dst_port, proto, src_identity);

CREATE TABLE IF NOT EXISTS flowaudit.observed_edges ON CLUSTER flowaudit_cluster AS flowaudit.observed_edges_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'observed_edges_local', rand());

CREATE TABLE IF NOT EXISTS flowaudit.rule_hits_1h_local ON CLUSTER flowaudit_cluster
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
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, rule, verdict, client_segment, server_segment, service_port, proto, staged_rule, staged_verdict, client_workload, server_workload, client_identity, service_side);

CREATE TABLE IF NOT EXISTS flowaudit.rule_hits_1h ON CLUSTER flowaudit_cluster AS flowaudit.rule_hits_1h_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'rule_hits_1h_local', rand());

CREATE TABLE IF NOT EXISTS flowaudit.policy_versions_local ON CLUSTER flowaudit_cluster
(
    version String COMMENT 'SHA-256 of the file, hex',
    loaded_at DateTime COMMENT 'when the enricher applied it',
    path String,
    content String,
    host String COMMENT 'host name of the enricher that applied it',
    summary String COMMENT 'one-line summary: segments, rules, default'
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (version, loaded_at, host);

CREATE TABLE IF NOT EXISTS flowaudit.policy_versions ON CLUSTER flowaudit_cluster AS flowaudit.policy_versions_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'policy_versions_local', cityHash64(version));

CREATE TABLE IF NOT EXISTS flowaudit.probe_results_local ON CLUSTER flowaudit_cluster
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
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(time)
ORDER BY (toStartOfHour(time), run_id, dst_segment, dst_addr, dst_port, proto);

CREATE TABLE IF NOT EXISTS flowaudit.probe_results ON CLUSTER flowaudit_cluster AS flowaudit.probe_results_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'probe_results_local', cityHash64(run_id));

CREATE TABLE IF NOT EXISTS flowaudit.sink_progress_local ON CLUSTER flowaudit_cluster
(
    kafka_partition UInt16,
    source_partition UInt16,
    source_offset AggregateFunction(max, Int64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (kafka_partition, source_partition);

CREATE TABLE IF NOT EXISTS flowaudit.sink_progress ON CLUSTER flowaudit_cluster AS flowaudit.sink_progress_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'sink_progress_local', rand());

CREATE TABLE IF NOT EXISTS flowaudit.audit_edges_1d_local ON CLUSTER flowaudit_cluster
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
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
PARTITION BY toYYYYMM(day)
ORDER BY (day, src_addr, dst_addr, src_port_key, dst_port_key, proto, service_side, src_identity, dst_identity, verdict, rule);

CREATE TABLE IF NOT EXISTS flowaudit.audit_edges_1d ON CLUSTER flowaudit_cluster AS flowaudit.audit_edges_1d_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'audit_edges_1d_local', rand());

CREATE TABLE IF NOT EXISTS flowaudit.reports_local ON CLUSTER flowaudit_cluster
(
    report_id String COMMENT 'framework and generation time, as the pack\'s directory name',
    framework String COMMENT 'pci-dss-4, soc2 or iso27001',
    generated_at DateTime,
    window_from DateTime COMMENT 'start of the history the pack covers',
    window_to DateTime COMMENT 'end of it (exclusive)',
    path String COMMENT 'directory of the pack on the host that wrote it',
    sha256 String COMMENT 'SHA-256 of the pack\'s MANIFEST.sha256, hex',
    summary String COMMENT 'the summary object of report.json'
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (framework, generated_at, report_id);

CREATE TABLE IF NOT EXISTS flowaudit.reports ON CLUSTER flowaudit_cluster AS flowaudit.reports_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'reports_local', rand());

CREATE TABLE IF NOT EXISTS flowaudit.console_edges_1m_local ON CLUSTER flowaudit_cluster
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
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', (flows, bytes))
PARTITION BY toYYYYMMDD(minute)
ORDER BY (minute, client_segment, server_segment, service_port, proto, verdict, staged_verdict, client_identity, rule, staged_rule, client_workload, server_workload);

CREATE TABLE IF NOT EXISTS flowaudit.console_edges_1m ON CLUSTER flowaudit_cluster AS flowaudit.console_edges_1m_local
ENGINE = Distributed('flowaudit_cluster', 'flowaudit', 'console_edges_1m_local', rand());

CREATE MATERIALIZED VIEW IF NOT EXISTS flowaudit.segment_matrix_1m_mv ON CLUSTER flowaudit_cluster TO flowaudit.segment_matrix_1m_local AS
SELECT toStartOfMinute(time_received) AS minute, src_segment, dst_segment, dst_port, proto, verdict, staged_verdict,
    count() AS flows, sum(bytes) AS bytes, sum(packets) AS packets
FROM flowaudit.flows_local
GROUP BY minute, src_segment, dst_segment, dst_port, proto, verdict, staged_verdict;

CREATE MATERIALIZED VIEW IF NOT EXISTS flowaudit.observed_edges_mv ON CLUSTER flowaudit_cluster TO flowaudit.observed_edges_local AS
SELECT src_segment, dst_segment, dst_port, proto, src_identity,
    minState(time_received) AS first_seen, maxState(time_received) AS last_seen, countState() AS flows
FROM flowaudit.flows_local
GROUP BY src_segment, dst_segment, dst_port, proto, src_identity;

CREATE MATERIALIZED VIEW IF NOT EXISTS flowaudit.rule_hits_1h_mv ON CLUSTER flowaudit_cluster TO flowaudit.rule_hits_1h_local AS
SELECT toStartOfHour(time_received) AS hour, rule, verdict, staged_rule, staged_verdict,
    if(service_side = 'src', dst_segment, src_segment) AS client_segment,
    if(service_side = 'src', src_segment, dst_segment) AS server_segment,
    if(service_side = 'src', dst_workload, src_workload) AS client_workload,
    if(service_side = 'src', src_workload, dst_workload) AS server_workload,
    if(service_side = 'src', dst_identity, src_identity) AS client_identity,
    if(service_side = '', dst_port, service_port) AS service_port,
    proto, service_side,
    count() AS flows, sum(bytes) AS bytes, maxState(time_received) AS last_hit
FROM flowaudit.flows_local
GROUP BY hour, rule, verdict, staged_rule, staged_verdict, client_segment, server_segment,
    client_workload, server_workload, client_identity, service_port, proto, service_side;

CREATE MATERIALIZED VIEW IF NOT EXISTS flowaudit.sink_progress_mv ON CLUSTER flowaudit_cluster TO flowaudit.sink_progress_local AS
SELECT kafka_partition, source_partition, maxState(source_offset) AS source_offset
FROM flowaudit.flows_local
GROUP BY kafka_partition, source_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS flowaudit.audit_edges_1d_mv ON CLUSTER flowaudit_cluster TO flowaudit.audit_edges_1d_local AS
SELECT toDate(time_received) AS day, src_addr, dst_addr, service_side,
    toUInt16(multiIf(proto NOT IN (6, 17, 132), src_port, service_side = 'dst', least(src_port, 32768), service_side = '' AND src_port > dst_port, least(src_port, greatest(32768, dst_port + 1)), src_port)) AS src_port_key,
    toUInt16(multiIf(proto NOT IN (6, 17, 132), dst_port, service_side = 'src', least(dst_port, 32768), service_side = '' AND dst_port > src_port, least(dst_port, greatest(32768, src_port + 1)), dst_port)) AS dst_port_key,
    proto, src_identity, dst_identity, verdict, rule,
    countState() AS flows, sumState(bytes) AS bytes,
    minState(CAST(multiIf(toUInt32(toDateTime(time_start)) != 0, toDateTime(time_start), toUInt32(toDateTime(time_end)) != 0, toDateTime(time_end), time_received) AS DateTime)) AS first_seen, maxState(CAST(multiIf(toUInt32(toDateTime(time_start)) != 0, toDateTime(time_start), toUInt32(toDateTime(time_end)) != 0, toDateTime(time_end), time_received) AS DateTime)) AS last_seen
FROM flowaudit.flows_local
GROUP BY day, src_addr, dst_addr, src_port_key, dst_port_key, proto, service_side, src_identity, dst_identity, verdict, rule;

CREATE MATERIALIZED VIEW IF NOT EXISTS flowaudit.console_edges_1m_mv ON CLUSTER flowaudit_cluster TO flowaudit.console_edges_1m_local AS
SELECT toStartOfMinute(time_received) AS minute,
    if(service_side = 'src', dst_segment, src_segment) AS client_segment,
    if(service_side = 'src', src_segment, dst_segment) AS server_segment,
    if(service_side = '', dst_port, service_port) AS service_port,
    proto, verdict, staged_verdict,
    if(service_side = 'src', dst_identity, src_identity) AS client_identity,
    rule, staged_rule,
    if(service_side = 'src', dst_workload, src_workload) AS client_workload,
    if(service_side = 'src', src_workload, dst_workload) AS server_workload,
    count() AS flows, sum(bytes) AS bytes
FROM flowaudit.flows_local
GROUP BY minute, client_segment, server_segment, service_port, proto, verdict, staged_verdict,
    client_identity, rule, staged_rule, client_workload, server_workload;
