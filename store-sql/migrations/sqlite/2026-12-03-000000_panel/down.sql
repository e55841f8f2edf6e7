DROP TABLE user_totp;
DROP TABLE subusers;
-- SQLite drops one column per ALTER TABLE.
ALTER TABLE servers DROP COLUMN deletion_requested_at;
ALTER TABLE servers DROP COLUMN suspended;
