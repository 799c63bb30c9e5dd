CREATE TABLE IF NOT EXISTS flowaudit.access_events
(
    time DateTime64(3) COMMENT 'when the access happened, from the log line' CODEC(Delta, ZSTD(1)),
    received DateTime COMMENT 'when flowaudit received the line' CODEC(Delta, ZSTD(1)),
    source LowCardinality(String) COMMENT 'sshd, nginx, apache, k8s_audit, gateway, json',
    host LowCardinality(String) COMMENT 'host that wrote the log line',
    user LowCardinality(String),
    src_addr IPv6 CODEC(ZSTD(1)),
    src_port UInt16,
    dst_addr IPv6 CODEC(ZSTD(1)),
    dst_host LowCardinality(String),
    dst_port UInt16,
    resource String CODEC(ZSTD(1)),
    action LowCardinality(String) COMMENT 'login, logout, session_open, session_close, disconnect, or the verb',
    outcome LowCardinality(String) COMMENT 'success, failure, denied or unknown',
    session_id String CODEC(ZSTD(1)),
    auth_method LowCardinality(String),
    status UInt16 COMMENT 'HTTP status or Kubernetes response code; 0 when none',
    user_agent LowCardinality(String),
    forwarded_for String COMMENT 'X-Forwarded-For chain of a web request, client first; empty for direct clients' CODEC(ZSTD(1)),
    peer_addr IPv6 COMMENT 'real address of the sender (syslog or HTTP peer); :: for tailed files' CODEC(ZSTD(1)),
    listener LowCardinality(String) COMMENT 'listener the event came through (udp://0.0.0.0:5514, https://…, file:///…)',
    trusted UInt8 DEFAULT 1 COMMENT '1 when the sender may bind identities (ingest.access.trusted_senders, http_token_hosts)',
    binding LowCardinality(String) COMMENT 'start, update or stop of a session binding of src_addr; empty: none',
    device String COMMENT 'device behind src_addr: MAC, DUID, Calling-Station-Id or namespace/pod' CODEC(ZSTD(1)),
    device_name LowCardinality(String) COMMENT 'the device\'s host name (DHCP client hostname)',
    expires DateTime COMMENT 'when the binding ends by itself (DHCP lease expiry); 1970-01-01: no expiry given',
    outer_addr IPv6 COMMENT 'where a tunnel session came from (OpenVPN real address); :: when none' CODEC(ZSTD(1)),
    labels String COMMENT 'Kubernetes pod labels, key=value sorted by key, comma-separated' CODEC(ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (toStartOfHour(time), src_addr, time)
TTL toDateTime(time) + INTERVAL 90 DAY
SETTINGS index_granularity = 8192
COMMENT 'Access-log events, one row per event'
