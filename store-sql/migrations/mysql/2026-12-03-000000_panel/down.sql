DROP TABLE user_totp;
DROP TABLE subusers;
ALTER TABLE servers
    DROP COLUMN deletion_requested_at,
    DROP COLUMN suspended;
