-- Nexus control-plane schema, PostgreSQL dialect. Keep in step with ../../mysql and
-- ../../sqlite and with src/schema.rs (same tables, columns and meaning; only types differ).
-- Ids are UUID text (the SQL type every backend shares); timestamps are UTC without zone;
-- `COLLATE "C"` makes ordering and uniqueness byte-wise, as in MemoryStore, whatever the
-- database's locale.

CREATE TABLE roles (
    name VARCHAR(16) COLLATE "C" PRIMARY KEY,
    description TEXT NOT NULL
);
INSERT INTO roles (name, description) VALUES
    ('admin', 'Full control over the panel, every node and every server'),
    ('user', 'Controls the servers they own or were granted');

CREATE TABLE users (
    id VARCHAR(36) COLLATE "C" PRIMARY KEY,
    username VARCHAR(255) NOT NULL,
    username_key VARCHAR(255) COLLATE "C" NOT NULL,
    email VARCHAR(255) NOT NULL,
    email_key VARCHAR(255) COLLATE "C" NOT NULL,
    password_hash TEXT NOT NULL,
    role VARCHAR(16) COLLATE "C" NOT NULL REFERENCES roles (name),
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT users_username_key_unique UNIQUE (username_key),
    CONSTRAINT users_email_key_unique UNIQUE (email_key)
);

CREATE TABLE locations (
    id VARCHAR(36) COLLATE "C" PRIMARY KEY,
    short_code VARCHAR(64) COLLATE "C" NOT NULL,
    long_name TEXT NOT NULL,
    CONSTRAINT locations_short_code_unique UNIQUE (short_code)
);

CREATE TABLE nodes (
    id VARCHAR(36) COLLATE "C" PRIMARY KEY,
    name VARCHAR(255) COLLATE "C" NOT NULL,
    fqdn VARCHAR(255) NOT NULL,
    daemon_port INTEGER NOT NULL,
    token_hash TEXT NOT NULL,
    location_id VARCHAR(36) COLLATE "C" REFERENCES locations (id),
    tags TEXT NOT NULL,
    memory_mb BIGINT NOT NULL,
    disk_mb BIGINT NOT NULL,
    cpu_percent BIGINT NOT NULL,
    over_memory_percent BIGINT,
    over_disk_percent BIGINT,
    over_cpu_percent BIGINT,
    maintenance BOOLEAN NOT NULL,
    status VARCHAR(16) COLLATE "C" NOT NULL,
    last_heartbeat TIMESTAMP,
    CONSTRAINT nodes_name_unique UNIQUE (name)
);
CREATE INDEX nodes_location ON nodes (location_id);
CREATE INDEX nodes_status_heartbeat ON nodes (status, last_heartbeat);

CREATE TABLE allocations (
    id VARCHAR(36) COLLATE "C" PRIMARY KEY,
    node_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES nodes (id),
    ip VARCHAR(45) NOT NULL,
    ip_key VARCHAR(33) COLLATE "C" NOT NULL,
    port INTEGER NOT NULL,
    alias VARCHAR(255),
    -- No foreign key: an allocation may be reserved for a server about to be created.
    server_id VARCHAR(36) COLLATE "C",
    CONSTRAINT allocations_address_unique UNIQUE (node_id, ip_key, port)
);
CREATE INDEX allocations_claim ON allocations (node_id, server_id, ip_key, port, id);
CREATE INDEX allocations_server ON allocations (server_id);

CREATE TABLE eggs (
    id VARCHAR(36) COLLATE "C" PRIMARY KEY,
    name VARCHAR(255) COLLATE "C" NOT NULL,
    source_uuid VARCHAR(64),
    source_format VARCHAR(16) NOT NULL,
    author TEXT NOT NULL,
    description TEXT NOT NULL,
    update_url TEXT,
    icon TEXT,
    exported_at TEXT,
    tags TEXT NOT NULL,
    features TEXT NOT NULL,
    images TEXT NOT NULL,
    file_denylist TEXT NOT NULL,
    startup_commands TEXT NOT NULL,
    config_files TEXT NOT NULL,
    done_matchers TEXT NOT NULL,
    stop_method TEXT NOT NULL,
    logs TEXT NOT NULL,
    install_script TEXT NOT NULL,
    install_container TEXT NOT NULL,
    install_entrypoint TEXT NOT NULL
);
CREATE INDEX eggs_name ON eggs (name, id);

CREATE TABLE egg_variables (
    egg_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES eggs (id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    env_variable VARCHAR(255) NOT NULL,
    default_value TEXT NOT NULL,
    user_viewable BOOLEAN NOT NULL,
    user_editable BOOLEAN NOT NULL,
    rules TEXT NOT NULL,
    field_type TEXT,
    sort_order BIGINT,
    PRIMARY KEY (egg_id, ordinal)
);

CREATE TABLE servers (
    id VARCHAR(36) COLLATE "C" PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    owner_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES users (id),
    node_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES nodes (id),
    egg_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES eggs (id),
    image TEXT NOT NULL,
    startup TEXT NOT NULL,
    environment TEXT NOT NULL,
    memory_mb BIGINT NOT NULL,
    swap_mb BIGINT NOT NULL,
    cpu_percent BIGINT NOT NULL,
    disk_mb BIGINT NOT NULL,
    io_weight INTEGER NOT NULL,
    pids BIGINT NOT NULL,
    primary_allocation_id VARCHAR(36) COLLATE "C" NOT NULL,
    extra_allocation_ids TEXT NOT NULL,
    state VARCHAR(16) COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
-- list_servers: every filter is an equality followed by the (created_at, id) order.
CREATE INDEX servers_owner_created ON servers (owner_id, created_at, id);
CREATE INDEX servers_node_created ON servers (node_id, created_at, id);
CREATE INDEX servers_egg_created ON servers (egg_id, created_at, id);
CREATE INDEX servers_created ON servers (created_at, id);

-- Per-server rights of sub-users (the owner holds every permission implicitly).
CREATE TABLE server_permissions (
    server_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    user_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    permission VARCHAR(32) COLLATE "C" NOT NULL,
    PRIMARY KEY (server_id, user_id, permission)
);
CREATE INDEX server_permissions_user ON server_permissions (user_id);

CREATE TABLE server_events (
    -- Append order; breaks ties between events with the same timestamp.
    seq BIGSERIAL PRIMARY KEY,
    server_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    from_state VARCHAR(16) NOT NULL,
    to_state VARCHAR(16) NOT NULL,
    trigger_name VARCHAR(32) NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX server_events_server ON server_events (server_id, at, seq);

CREATE TABLE schedules (
    id VARCHAR(36) COLLATE "C" PRIMARY KEY,
    server_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name VARCHAR(255) COLLATE "C" NOT NULL,
    cron VARCHAR(255) NOT NULL,
    timezone VARCHAR(64) NOT NULL,
    enabled BOOLEAN NOT NULL,
    only_when_online BOOLEAN NOT NULL,
    last_run_at TIMESTAMP,
    next_run_at TIMESTAMP
);
CREATE INDEX schedules_server ON schedules (server_id, name, id);
CREATE INDEX schedules_due ON schedules (enabled, next_run_at, id);

CREATE TABLE schedule_tasks (
    schedule_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    id VARCHAR(36) COLLATE "C" NOT NULL,
    action_kind VARCHAR(16) NOT NULL,
    payload TEXT NOT NULL,
    offset_seconds BIGINT NOT NULL,
    continue_on_failure BOOLEAN NOT NULL,
    PRIMARY KEY (schedule_id, ordinal)
);

CREATE TABLE api_keys (
    id VARCHAR(36) COLLATE "C" PRIMARY KEY,
    user_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    prefix VARCHAR(64) COLLATE "C" NOT NULL,
    secret_hash TEXT NOT NULL,
    memo TEXT NOT NULL,
    scope VARCHAR(16) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    expires_at TIMESTAMP,
    CONSTRAINT api_keys_prefix_unique UNIQUE (prefix)
);
CREATE INDEX api_keys_user ON api_keys (user_id, created_at, id);

CREATE TABLE backups (
    id VARCHAR(36) COLLATE "C" PRIMARY KEY,
    server_id VARCHAR(36) COLLATE "C" NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    name VARCHAR(255) NOT NULL,
    ignored_patterns TEXT NOT NULL,
    state VARCHAR(16) NOT NULL,
    bytes BIGINT,
    checksum VARCHAR(255),
    is_locked BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP
);
CREATE INDEX backups_server ON backups (server_id, created_at, id);

CREATE TABLE audit_logs (
    -- Append order; breaks ties between entries with the same timestamp.
    seq BIGSERIAL PRIMARY KEY,
    id VARCHAR(36) COLLATE "C" NOT NULL,
    -- No foreign keys: the log outlives the users and objects it mentions.
    actor_id VARCHAR(36) COLLATE "C",
    action VARCHAR(255) NOT NULL,
    subject_kind VARCHAR(16) COLLATE "C" NOT NULL,
    subject_id VARCHAR(36) COLLATE "C",
    metadata TEXT NOT NULL,
    ip VARCHAR(64),
    at TIMESTAMP NOT NULL,
    CONSTRAINT audit_logs_id_unique UNIQUE (id)
);
CREATE INDEX audit_logs_at ON audit_logs (at, seq);
CREATE INDEX audit_logs_subject ON audit_logs (subject_kind, subject_id, at, seq);
