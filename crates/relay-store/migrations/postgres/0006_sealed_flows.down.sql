-- Reverts 0006_sealed_flows (pending flows are dropped, as on the way up).
DROP TABLE oauth_flows;

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
