-- Bounces (CONTRACT 1.2 §9, D3): the deputies a fallback looks up, and every delivery status
-- notification read from `mail.bounce_imap_url`, kept once, matched or not.

-- The deputies of a referent, looked up by the fallback of each bounce.
CREATE INDEX referents_deputy_of ON referents (deputy_of) WHERE deputy_of IS NOT NULL;

-- One row per report read. `report_key` (the report's own Message-ID, or a digest of its
-- bytes) makes a report read twice — a second replica, a restart before the mailbox was
-- marked — count once. No address is kept: the delivery's timeline has it.
CREATE TABLE bounce_reports (
    id              BIGSERIAL PRIMARY KEY,
    report_key      TEXT NOT NULL UNIQUE,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- bounced: a permanent failure of a delivery of ours (its fallback followed);
    -- not_permanent: a delay, a success or a 4.x.x, recorded only; unmatched: it names no delivery of
    -- ours, or one to another address (forged or stray); malformed: not an RFC 3464 report.
    outcome         TEXT NOT NULL CHECK (outcome IN ('bounced', 'not_permanent', 'unmatched', 'malformed')),
    notification_id UUID,
    referent_id     TEXT,
    -- The DSN's status (e.g. 5.1.1), and why the report changed nothing, when it did not.
    status          TEXT,
    reason          TEXT
);
CREATE INDEX bounce_reports_received ON bounce_reports (received_at);
