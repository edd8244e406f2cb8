-- What referents ask of their mail (issue 22): per-kind modes and quiet hours, digests.

-- The referent's preferences, as `registry.referent.v1` carries them
-- ({"kinds": {...}, "quiet_hours": "HH:MM-HH:MM", "quiet_weekends": bool}); `{}` sends
-- everything at once, as before.
ALTER TABLE referents
    ADD COLUMN preferences JSONB NOT NULL DEFAULT '{}'::JSONB;

-- One digest email: the items of one referent (at one address) whose windows had closed
-- when it was composed. An item belongs to at most one digest (`deliveries.digest_id`,
-- set once, under the composer's lock on the referent), so a digest can never be composed
-- twice nor an item be in two; a digest sent and not recorded before a crash goes again
-- with the same Message-ID (`<digest-ID@domain>`, CONTRACT F3).
CREATE TABLE digests (
    id              UUID PRIMARY KEY,
    referent_id     TEXT NOT NULL,
    email           TEXT NOT NULL,
    -- The latest window close among its items.
    window_end      TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    message_id      TEXT,
    smtp_response   TEXT,
    sent_at         TIMESTAMPTZ,
    -- Given up (the server refused it, or it kept failing): its items go one by one.
    -- Or emptied: every item was cancelled before it went.
    closed_at       TIMESTAMPTZ,
    closed_reason   TEXT
);
CREATE INDEX digests_due ON digests (next_attempt_at) WHERE sent_at IS NULL AND closed_at IS NULL;
CREATE INDEX digests_sent_at ON digests (sent_at);

-- A delivery put in a digest waits with next_attempt_at = 'infinity' (no sender claims it)
-- until its window closes at digest_due_at; digest_id is the digest that took it. One held
-- alone for quiet hours waits the same way until deferred_until. Both instants are the
-- mailer's clock's, which releases them.
ALTER TABLE deliveries
    ADD COLUMN digest_due_at  TIMESTAMPTZ,
    ADD COLUMN digest_id      UUID REFERENCES digests (id) ON DELETE SET NULL,
    ADD COLUMN deferred_until TIMESTAMPTZ;
CREATE INDEX deliveries_deferred ON deliveries (deferred_until)
    WHERE deferred_until IS NOT NULL;
CREATE INDEX deliveries_digest_due ON deliveries (digest_due_at, referent_id)
    WHERE digest_due_at IS NOT NULL AND digest_id IS NULL
      AND delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX deliveries_digest_of ON deliveries (digest_id) WHERE digest_id IS NOT NULL;

-- The timeline's new events: `digested` (put in a digest, with the window's close),
-- `sent_in_digest` (the digest carrying it was accepted), `deferred` (held alone for quiet
-- hours), `suppressed` (the referent turned an optional kind off).
ALTER TABLE delivery_events DROP CONSTRAINT IF EXISTS delivery_events_event_check;
ALTER TABLE delivery_events ADD CONSTRAINT delivery_events_event_check CHECK (event IN (
    'queued', 'sent', 'bounced', 'pec_accepted', 'pec_delivered', 'pec_not_delivered',
    'acknowledged', 'reminded', 'escalated', 'fallback', 'cancelled',
    'digested', 'sent_in_digest', 'deferred', 'suppressed'));
