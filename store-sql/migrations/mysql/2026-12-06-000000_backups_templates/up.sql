-- Backups and templates: a server's backup limit (NULL: no limit, 0: none allowed) and the
-- template layers attached to servers and eggs (JSON arrays of "name@version", applied after
-- the egg's install script, egg layers first). Keep in step with the other dialects and with
-- src/schema.rs. VARCHAR, not TEXT, so MySQL takes the default; the control plane keeps the
-- lists far below the bound.
ALTER TABLE servers ADD COLUMN backup_limit INTEGER;
ALTER TABLE servers ADD COLUMN templates VARCHAR(4096) NOT NULL DEFAULT '[]';
ALTER TABLE eggs ADD COLUMN templates VARCHAR(4096) NOT NULL DEFAULT '[]';
