-- Record refs: integer numbers, short keys and external ids of records, for APIs that name
-- records by integer (Pterodactyl's). PostgreSQL dialect; keep in step with ../../mysql and
-- ../../sqlite and with src/schema.rs.
CREATE TABLE record_refs (
    kind VARCHAR(16) COLLATE "C" NOT NULL,
    record_key VARCHAR(191) COLLATE "C" NOT NULL,
    number BIGINT NOT NULL,
    short VARCHAR(8) COLLATE "C" NOT NULL,
    external_id VARCHAR(191) COLLATE "C",
    -- What an API keeps about the record that the model does not (JSON object of strings).
    extra TEXT,
    PRIMARY KEY (kind, record_key),
    CONSTRAINT record_refs_number_unique UNIQUE (kind, number),
    CONSTRAINT record_refs_external_unique UNIQUE (kind, external_id)
);
CREATE INDEX record_refs_short ON record_refs (kind, short);
-- The last number handed out per kind; its row lock orders concurrent numbering.
CREATE TABLE record_ref_counters (
    kind VARCHAR(16) COLLATE "C" PRIMARY KEY,
    last_number BIGINT NOT NULL
);
