-- Pending connect flows become one sealed record (issue 10, item 10): who the flow is for,
-- where it returns, the PKCE verifier and the expected identity are sealed together, bound to
-- the state hash, so whoever can write this table (or Redis) cannot redirect a flow to
-- another actor or return_to. Only what purging and `vault status` need stays in the clear.
-- Flows pending during the upgrade (ten minutes at most) are dropped: their users start again.
DROP TABLE oauth_flows;

CREATE TABLE oauth_flows (
    state_hash   TEXT   NOT NULL PRIMARY KEY,
    workspace_id TEXT   NOT NULL,
    sealed_flow  BLOB   NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX oauth_flows_expires_at_idx ON oauth_flows (expires_at);
