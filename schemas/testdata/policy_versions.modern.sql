CREATE TABLE IF NOT EXISTS flowaudit.policy_versions
(
    version String COMMENT 'SHA-256 of the file, hex',
    loaded_at DateTime64(3) COMMENT 'when the enricher applied it',
    path String,
    content String CODEC(ZSTD(3)),
    host LowCardinality(String) COMMENT 'host name of the enricher that applied it',
    summary String COMMENT 'one-line summary: segments, rules, default'
)
ENGINE = ReplacingMergeTree
ORDER BY (version, loaded_at, host)
SETTINGS index_granularity = 8192
COMMENT 'Every policy file an enricher applied'
