-- Nests: named groups of eggs (Pterodactyl's). PostgreSQL dialect; keep in step with
-- ../../mysql and ../../sqlite and with src/schema.rs.
CREATE TABLE nests (
    id VARCHAR(36) COLLATE "C" PRIMARY KEY,
    name VARCHAR(191) COLLATE "C" NOT NULL,
    description TEXT NOT NULL,
    CONSTRAINT nests_name_unique UNIQUE (name)
);
-- An egg belongs to at most one nest; eggs imported before nests existed belong to none.
ALTER TABLE eggs ADD COLUMN nest_id VARCHAR(36) COLLATE "C" REFERENCES nests (id);
CREATE INDEX eggs_nest ON eggs (nest_id);
