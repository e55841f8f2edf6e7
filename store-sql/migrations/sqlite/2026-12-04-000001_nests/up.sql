-- Nests: named groups of eggs (Pterodactyl's). SQLite dialect; keep in step with
-- ../../postgres and ../../mysql and with src/schema.rs.
CREATE TABLE nests (
    id VARCHAR(36) PRIMARY KEY,
    name VARCHAR(191) NOT NULL,
    description TEXT NOT NULL,
    CONSTRAINT nests_name_unique UNIQUE (name)
);
-- An egg belongs to at most one nest; eggs imported before nests existed belong to none.
ALTER TABLE eggs ADD COLUMN nest_id VARCHAR(36) REFERENCES nests (id);
CREATE INDEX eggs_nest ON eggs (nest_id);
