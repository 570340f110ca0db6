-- API key roles: `admin` (keys, webhook secret, audit log, and everything `service` may do) or
-- `service` (connect, connections, tokens, actions, providers). Keys that exist before this
-- migration become `admin`: until now every key could do everything, and a deployment that
-- manages its keys or reads its webhook secret with them keeps working after the upgrade.
-- New keys always name their role (`relay api-key create` and `POST /api-keys` default to
-- `service`); the column default also covers a replica of the previous version still
-- creating keys during a rolling upgrade, with the behaviour it had.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'admin'
    CHECK (role IN ('admin', 'service'));
