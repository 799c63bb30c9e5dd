CREATE TABLE IF NOT EXISTS flowaudit.kafka_offsets
(
    consumer_group String,
    topic String,
    partition UInt32,
    next_offset Int64 COMMENT 'offset of the first record not yet in ClickHouse',
    updated DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(next_offset)
ORDER BY (consumer_group, topic, partition)
