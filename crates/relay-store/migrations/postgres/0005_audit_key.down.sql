-- Reverts 0005_audit_key.
DROP TABLE IF EXISTS audit_mac_key;
