-- Actions (PostgreSQL): previews (the rendered request, sealed), executions (claimed before sending, so a
-- preview is sent once across processes) and the workspaces' webhook signing secrets (sealed).

CREATE TABLE action_previews (
    id            TEXT    NOT NULL PRIMARY KEY,
    workspace_id  TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    connection_id TEXT,
    digest        TEXT    NOT NULL,
    payload       BYTEA   NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);

CREATE INDEX action_previews_expires_at_idx ON action_previews (expires_at);

-- One row per executed preview; the primary key is the claim. A row without completed_at is
-- an execution in flight (or, if old, in doubt).
CREATE TABLE action_executions (
    workspace_id    TEXT    NOT NULL,
    preview_id      TEXT    NOT NULL,
    idempotency_key TEXT,
    claimed_at      BIGINT  NOT NULL,
    completed_at    BIGINT,
    outcome         BYTEA,
    PRIMARY KEY (workspace_id, preview_id)
);

CREATE UNIQUE INDEX action_executions_key_idx
    ON action_executions (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE webhook_secrets (
    id           TEXT    NOT NULL PRIMARY KEY,
    workspace_id TEXT    NOT NULL,
    secret       BYTEA   NOT NULL,
    created_at   BIGINT  NOT NULL,
    retires_at   BIGINT
);

-- At most one current (not retiring) secret per workspace.
CREATE UNIQUE INDEX webhook_secrets_current_idx
    ON webhook_secrets (workspace_id) WHERE retires_at IS NULL;
