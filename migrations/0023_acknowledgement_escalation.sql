-- Acknowledgement links and escalation (CONTRACT 1.2 §9, D4 and D5).

-- When the recipient pressed the link's button: set once, by the first POST; what the
-- escalation checks ("acknowledged by any recipient"). The timeline holds the event too.
ALTER TABLE deliveries ADD COLUMN acknowledged_at TIMESTAMPTZ;

-- One row per escalated notification: its primary key makes the reminder and the
-- escalation happen once whatever the replicas and restarts, because each is decided in
-- the transaction that writes this row (the reminder) or sets escalated_at (the escalation).
CREATE TABLE escalations (
    notification_id  UUID PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    reminded_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    escalated_at     TIMESTAMPTZ,
    -- The delivery.unacknowledged notification it caused.
    unacknowledged_id UUID
);

-- A reminder: the notification sent again to a recipient it was sent to, with a
-- Message-ID of its own (CONTRACT §11). Claimed and recorded as deliveries are.
CREATE TABLE reminders (
    notification_id UUID NOT NULL,
    email           TEXT NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INT NOT NULL DEFAULT 0,
    sent_at         TIMESTAMPTZ,
    failed_at       TIMESTAMPTZ,
    message_id      TEXT,
    last_error      TEXT,
    PRIMARY KEY (notification_id, email),
    FOREIGN KEY (notification_id, email) REFERENCES deliveries (notification_id, email) ON DELETE CASCADE
);
CREATE INDEX reminders_due ON reminders (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

-- The escalation's scan: urgent alerts by age.
CREATE INDEX notifications_escalating ON notifications (created_at)
    WHERE urgent AND kind = 'eviction.alert';

-- Alerts decided before escalation existed are not reminded or escalated now, days late.
INSERT INTO escalations (notification_id, reminded_at, escalated_at)
SELECT id, now(), now()
FROM notifications
WHERE urgent AND kind = 'eviction.alert';
