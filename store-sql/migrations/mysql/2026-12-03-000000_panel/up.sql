-- Panel features: suspension, deferred deletion, subusers, second factors. MySQL/MariaDB
-- dialect; keep in step with ../../postgres and ../../sqlite and with src/schema.rs.

-- DEFAULT FALSE: servers that existed before this migration are not suspended.
ALTER TABLE servers
    ADD COLUMN suspended BOOL NOT NULL DEFAULT FALSE,
    ADD COLUMN deletion_requested_at DATETIME(6);

-- Users granted rights on a server they do not own; permissions are a JSON array of names.
-- Supersedes server_permissions (never used by a repository).
CREATE TABLE subusers (
    server_id VARCHAR(36) NOT NULL,
    user_id VARCHAR(36) NOT NULL,
    permissions TEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (server_id, user_id),
    FOREIGN KEY (server_id) REFERENCES servers (id) ON DELETE CASCADE,
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
-- list_subusers: oldest first, then user id.
CREATE INDEX subusers_server_created ON subusers (server_id, created_at, user_id);
-- list_servers by member, and the cascade when a user is deleted.
CREATE INDEX subusers_user ON subusers (user_id, server_id);

-- One TOTP second factor per user; recovery_hashes is a JSON array.
CREATE TABLE user_totp (
    user_id VARCHAR(36) PRIMARY KEY,
    secret TEXT NOT NULL,
    recovery_hashes TEXT NOT NULL,
    enabled_at DATETIME(6),
    last_step BIGINT,
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
