ALTER TABLE eggs DROP COLUMN templates;
ALTER TABLE servers DROP COLUMN templates;
ALTER TABLE servers DROP COLUMN backup_limit;
