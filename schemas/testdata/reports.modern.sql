CREATE TABLE IF NOT EXISTS flowaudit.reports
(
    report_id String COMMENT 'framework and generation time, as the pack\'s directory name',
    framework LowCardinality(String) COMMENT 'pci-dss-4, soc2 or iso27001',
    generated_at DateTime,
    window_from DateTime COMMENT 'start of the history the pack covers',
    window_to DateTime COMMENT 'end of it (exclusive)',
    path String COMMENT 'directory of the pack on the host that wrote it',
    sha256 String COMMENT 'SHA-256 of the pack\'s MANIFEST.sha256, hex',
    summary String COMMENT 'the summary object of report.json'
)
ENGINE = ReplacingMergeTree
ORDER BY (framework, generated_at, report_id)
SETTINGS index_granularity = 8192
COMMENT 'Compliance evidence packs, one row per pack'
