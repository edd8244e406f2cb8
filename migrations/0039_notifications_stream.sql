-- no-transaction
-- GET /v1/stream reads notifications by their stream number. CONCURRENTLY, for the reason
-- of 0035.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS notifications_stream ON notifications (stream_seq)
    WHERE stream_seq IS NOT NULL;
