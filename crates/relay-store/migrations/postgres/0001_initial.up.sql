-- Relay's initial schema for PostgreSQL. Times are Unix milliseconds in BIGINT (the same
-- integers SQLite stores, so both dialects compare times identically); tokens are sealed
-- bytes, never plaintext.

CREATE TABLE workspaces (
    id          TEXT   NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id                    TEXT   NOT NULL PRIMARY KEY,
    workspace_id          TEXT   NOT NULL REFERENCES workspaces (id),
    secret_hash           TEXT   NOT NULL UNIQUE,
    created_at            BIGINT NOT NULL,
    revoked_at            BIGINT,
    rate_limit_per_minute BIGINT
);

CREATE INDEX api_keys_workspace_idx ON api_keys (workspace_id);

-- Pending connect flows, keyed by the SHA-256 of the state. Short-lived: purged by expiry.
CREATE TABLE oauth_flows (
    state_hash      TEXT    NOT NULL PRIMARY KEY,
    workspace_id    TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    actor_type      TEXT    NOT NULL,
    actor_id        TEXT    NOT NULL,
    scopes          TEXT    NOT NULL,
    pkce_verifier   BYTEA   NOT NULL,
    redirect_uri    TEXT    NOT NULL,
    expected_issuer TEXT,
    iss_required    BOOLEAN NOT NULL,
    return_to       TEXT,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL
);

CREATE INDEX oauth_flows_expires_at_idx ON oauth_flows (expires_at);

CREATE TABLE connections (
    id                TEXT    NOT NULL PRIMARY KEY,
    workspace_id      TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    actor_type        TEXT    NOT NULL,
    actor_id          TEXT    NOT NULL,
    scopes            TEXT    NOT NULL,
    token_type        TEXT    NOT NULL,
    access_token      BYTEA   NOT NULL,
    refresh_token     BYTEA,
    expires_at        BIGINT,
    status            TEXT    NOT NULL CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    status_reason     TEXT,
    version           BIGINT  NOT NULL,
    lease_owner       TEXT,
    lease_until       BIGINT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    last_refreshed_at BIGINT,
    next_refresh_at   BIGINT,
    refresh_failures  INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT connections_actor_key UNIQUE (workspace_id, provider, actor_type, actor_id)
);

-- The background refresher claims due rows in next_refresh_at order; only active ones matter.
CREATE INDEX connections_due_idx ON connections (next_refresh_at) WHERE status = 'active';
-- Lookups by actor within a workspace and provider (status pages, imports).
CREATE INDEX connections_actor_idx ON connections (workspace_id, provider, actor_id);
-- Listing a workspace's connections in a stable (created_at, id) order.
CREATE INDEX connections_list_idx ON connections (workspace_id, created_at, id);

-- Master keys this database has seen, so that starting with the wrong key is refused.
CREATE TABLE vault_keys (
    key_id     TEXT   NOT NULL PRIMARY KEY,
    created_at BIGINT NOT NULL
);
