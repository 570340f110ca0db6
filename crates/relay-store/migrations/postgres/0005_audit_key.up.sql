-- The audit chain's HMAC key (relay_core::audit::open_or_create_key): derived from the master
-- key once, then kept here sealed by the vault, so rotating the master key (which re-seals
-- this row) never makes older records unverifiable. One row.
CREATE TABLE audit_mac_key (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    sealed     BYTEA   NOT NULL,
    created_at BIGINT  NOT NULL
);
