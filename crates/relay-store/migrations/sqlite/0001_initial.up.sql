-- Relay's initial schema for SQLite. Times are Unix milliseconds (SQLite's INTEGER is 64-bit,
-- the same range as PostgreSQL's BIGINT); tokens are sealed bytes, never plaintext. STRICT
-- tables make SQLite refuse values of the wrong type, as PostgreSQL would.

CREATE TABLE workspaces (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id                    TEXT    NOT NULL PRIMARY KEY,
    workspace_id          TEXT    NOT NULL REFERENCES workspaces (id),
    secret_hash           TEXT    NOT NULL UNIQUE,
    created_at            INTEGER NOT NULL,
    revoked_at            INTEGER,
    rate_limit_per_minute INTEGER
) STRICT;

CREATE INDEX api_keys_workspace_idx ON api_keys (workspace_id);

-- Pending connect flows, keyed by the SHA-256 of the state. Short-lived: purged by expiry.
CREATE TABLE oauth_flows (
    state_hash      TEXT    NOT NULL PRIMARY KEY,
    workspace_id    TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    actor_type      TEXT    NOT NULL,
    actor_id        TEXT    NOT NULL,
    scopes          TEXT    NOT NULL,
    pkce_verifier   BLOB    NOT NULL,
    redirect_uri    TEXT    NOT NULL,
    expected_issuer TEXT,
    iss_required    INTEGER NOT NULL CHECK (iss_required IN (0, 1)),
    return_to       TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT;

CREATE INDEX oauth_flows_expires_at_idx ON oauth_flows (expires_at);

CREATE TABLE connections (
    id                TEXT    NOT NULL PRIMARY KEY,
    workspace_id      TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    actor_type        TEXT    NOT NULL,
    actor_id          TEXT    NOT NULL,
    scopes            TEXT    NOT NULL,
    token_type        TEXT    NOT NULL,
    access_token      BLOB    NOT NULL,
    refresh_token     BLOB,
    expires_at        INTEGER,
    status            TEXT    NOT NULL CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    status_reason     TEXT,
    version           INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_until       INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    last_refreshed_at INTEGER,
    next_refresh_at   INTEGER,
    refresh_failures  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (workspace_id, provider, actor_type, actor_id)
) STRICT;

-- The background refresher claims due rows in next_refresh_at order; only active ones matter.
CREATE INDEX connections_due_idx ON connections (next_refresh_at) WHERE status = 'active';
-- Lookups by actor within a workspace and provider (status pages, imports).
CREATE INDEX connections_actor_idx ON connections (workspace_id, provider, actor_id);
-- Listing a workspace's connections in a stable (created_at, id) order.
CREATE INDEX connections_list_idx ON connections (workspace_id, created_at, id);

-- Master keys this database has seen, so that starting with the wrong key is refused.
CREATE TABLE vault_keys (
    key_id     TEXT    NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT;
