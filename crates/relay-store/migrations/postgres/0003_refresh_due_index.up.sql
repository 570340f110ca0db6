-- The background refresher asks "which active connections are due?" every few seconds; this
-- partial index answers it without scanning the table.
CREATE INDEX connections_next_refresh_idx ON connections (next_refresh_at)
    WHERE status = 'active' AND refresh_token IS NOT NULL;
