-- no-transaction
-- Retention of payloads (`retention.notification_days`) looks for the oldest notifications
-- not reduced yet: a partial index, so it never walks past the years already reduced.
-- CONCURRENTLY, for the reason of 0035.
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_unreduced ON notifications (created_at)
    WHERE NOT (payload ? 'scrubbed');
