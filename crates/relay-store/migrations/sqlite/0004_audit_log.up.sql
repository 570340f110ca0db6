-- The audit log: one append-only record per sensitive operation, chained per workspace by
-- SHA-256 (see relay_core::audit). `audit_heads` holds each workspace's last sequence number
-- and hash; a writer advances it in the same transaction as the records it appends, so
-- concurrent writers (SQLite has one at a time) never fork a chain.

CREATE TABLE audit_heads (
    workspace_id TEXT    NOT NULL PRIMARY KEY,
    seq          INTEGER NOT NULL,
    hash         TEXT    NOT NULL
) STRICT;

CREATE TABLE audit_log (
    workspace_id  TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    action        TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    api_key_id    TEXT,
    actor_id      TEXT,
    connection_id TEXT,
    provider      TEXT,
    request_id    TEXT,
    client_addr   TEXT,
    detail        TEXT,
    prev_hash     TEXT    NOT NULL,
    hash          TEXT    NOT NULL,
    PRIMARY KEY (workspace_id, seq)
) STRICT;

-- GET /audit filters by time, connection and actor within a workspace.
CREATE INDEX audit_log_at_idx ON audit_log (workspace_id, at);
CREATE INDEX audit_log_connection_idx ON audit_log (workspace_id, connection_id, seq);
CREATE INDEX audit_log_actor_idx ON audit_log (workspace_id, actor_id, seq);
