-- Reverts 0006_sealed_flows (pending flows are dropped, as on the way up).
DROP TABLE oauth_flows;

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
