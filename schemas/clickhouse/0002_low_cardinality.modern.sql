-- Modern servers only (20.1+): dictionary-encode the low-cardinality text
-- columns. None of them is in the sorting key, so this is an ordinary
-- column type change (a background mutation on existing parts).
ALTER TABLE {db}.attempts
    MODIFY COLUMN event_type LowCardinality(String),
    MODIFY COLUMN outcome LowCardinality(String),
    MODIFY COLUMN error_code LowCardinality(String)
