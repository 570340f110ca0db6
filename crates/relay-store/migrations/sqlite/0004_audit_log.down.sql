-- Reverts 0004_audit_log.
DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS audit_heads;
