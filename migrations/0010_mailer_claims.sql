-- The mailer claims its work from `deliveries` directly (no broker hop): a pending row is
-- due at `next_attempt_at`, pushed back after each transient failure; when the mailer gives
-- up it sets `failed_at` and says where the delivery is held ('dead': refused for good,
-- 'parked': kept failing), and the relay announces it in `{prefix}.dead` / `{prefix}.parked`
-- (`held_reported_at`) so that `raccordo dlq` lists and replays it. A delivery cancelled by a
-- revoked consent (C4) has `failed_at` without `held_in`: nothing to replay.
ALTER TABLE deliveries
    ADD COLUMN next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN held_in          TEXT CHECK (held_in IN ('dead', 'parked')),
    ADD COLUMN held_reported_at TIMESTAMPTZ;

-- The claim's order, pending rows only.
DROP INDEX deliveries_pending;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX deliveries_held_unreported ON deliveries (notification_id)
    WHERE held_in IS NOT NULL AND held_reported_at IS NULL;

-- Refused before this migration: already dead-lettered by the mailer's old consumer, so held
-- and announced (a replay of that dead letter releases them). A C4 cancellation is not held.
UPDATE deliveries
SET held_in = 'dead',
    held_reported_at = failed_at
WHERE failed_at IS NOT NULL
  AND delivered_at IS NULL
  AND last_error IS DISTINCT FROM 'not sent: the family revoked its consent before delivery (C4)';
