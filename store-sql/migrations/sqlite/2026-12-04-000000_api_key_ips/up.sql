-- API keys limited to addresses: a JSON array of IPs and CIDR ranges (empty: any address).
-- Keep in step with the other dialects and with src/schema.rs. VARCHAR, not TEXT, so MySQL
-- takes the default; the control plane keeps the list far below the bound.
ALTER TABLE api_keys ADD COLUMN allowed_ips VARCHAR(4096) NOT NULL DEFAULT '[]';
