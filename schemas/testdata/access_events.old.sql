CREATE TABLE IF NOT EXISTS flowaudit.access_events
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
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (toStartOfHour(time), src_addr, time)
