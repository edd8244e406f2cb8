-- Delivery evidence (CONTRACT 1.2 §9, D1): what happened to each delivery after the hub
-- decided it, as dated events, and the referents' PEC addresses and deputies.

-- A referent's PEC address (D2) and the referent it stands in for (D3, D5). Validated on
-- import; nullable, as every referent before 1.2.
ALTER TABLE referents
    ADD COLUMN pec       TEXT,
    ADD COLUMN deputy_of TEXT;

-- The channel a delivery goes by (`email` is its address, a PEC address for `pec`), and its
-- latest timeline event, so the console can filter deliveries by state without a scan.
ALTER TABLE deliveries
    ADD COLUMN channel  TEXT NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'pec')),
    ADD COLUMN state    TEXT NOT NULL DEFAULT 'queued',
    ADD COLUMN state_at TIMESTAMPTZ NOT NULL DEFAULT now();
-- Deliveries sent before this migration.
UPDATE deliveries SET state = 'sent', state_at = delivered_at WHERE delivered_at IS NOT NULL;
UPDATE deliveries SET state = 'cancelled', state_at = failed_at
    WHERE delivered_at IS NULL AND failed_at IS NOT NULL AND held_in IS NULL;
CREATE INDEX deliveries_state ON deliveries (state, state_at);

-- The timeline: one row per event of a delivery, appended by every stage in the transaction
-- of the change it records. No foreign key: it is kept `retention.audit_years`, longer than
-- the notifications and their deliveries; so it carries kind, referent and channel itself.
-- `recipient` is the delivery's address; it never leaves the database in a `delivery.*` event.
CREATE TABLE delivery_events (
    id              BIGSERIAL PRIMARY KEY,
    notification_id UUID NOT NULL,
    kind            TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    referent_id     TEXT NOT NULL,
    channel         TEXT NOT NULL,
    event           TEXT NOT NULL CHECK (event IN (
                        'queued', 'sent', 'bounced', 'pec_accepted', 'pec_delivered',
                        'pec_not_delivered', 'acknowledged', 'reminded', 'escalated',
                        'fallback', 'cancelled')),
    at              TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    details         JSONB NOT NULL DEFAULT '{}'::JSONB,
    -- Set once the relay has published it as `delivery.<event>` on `{prefix}.events`.
    published_at    TIMESTAMPTZ
);
CREATE INDEX delivery_events_of ON delivery_events (notification_id, id);
CREATE INDEX delivery_events_unpublished ON delivery_events (id) WHERE published_at IS NULL;
CREATE INDEX delivery_events_at ON delivery_events (at);
