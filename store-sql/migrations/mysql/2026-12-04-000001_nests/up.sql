-- Nests: named groups of eggs (Pterodactyl's). MySQL/MariaDB dialect; keep in step with
-- ../../postgres and ../../sqlite and with src/schema.rs.
CREATE TABLE nests (
    id VARCHAR(36) PRIMARY KEY,
    name VARCHAR(191) NOT NULL,
    description TEXT NOT NULL,
    CONSTRAINT nests_name_unique UNIQUE (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
-- An egg belongs to at most one nest; eggs imported before nests existed belong to none.
ALTER TABLE eggs ADD COLUMN nest_id VARCHAR(36) NULL;
ALTER TABLE eggs ADD CONSTRAINT eggs_nest_fk FOREIGN KEY (nest_id) REFERENCES nests (id);
