DROP INDEX IF EXISTS connections_next_refresh_idx;
