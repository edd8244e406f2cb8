-- no-transaction
-- Retention of idempotency keys (`retention.inbox_days`) walks the inbox by age. Built
-- CONCURRENTLY (alone in its file, outside a transaction): the inbox takes a row per event,
-- and a plain build would block ingestion for as long as it reads years of them.
CREATE INDEX CONCURRENTLY IF NOT EXISTS inbox_received ON inbox (received_at);
