CREATE TABLE IF NOT EXISTS flowaudit.policy_versions
(
    version String COMMENT 'SHA-256 of the file, hex',
    loaded_at DateTime COMMENT 'when the enricher applied it',
    path String,
    content String,
    host String COMMENT 'host name of the enricher that applied it',
    summary String COMMENT 'one-line summary: segments, rules, default'
)
ENGINE = ReplacingMergeTree
ORDER BY (version, loaded_at, host)
