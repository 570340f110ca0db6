-- Reverts 0001_initial: drops every table it created (indexes go with their tables).
DROP TABLE IF EXISTS vault_keys;
DROP TABLE IF EXISTS connections;
DROP TABLE IF EXISTS oauth_flows;
DROP TABLE IF EXISTS api_keys;
DROP TABLE IF EXISTS workspaces;
