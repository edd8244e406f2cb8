-- The foundation: registry, idempotent ingestion, the notification outbox and its deliveries,
-- housing units. No table holds personal data of families (CONTRACT C1).

CREATE TABLE comuni (
    istat       TEXT PRIMARY KEY CHECK (istat ~ '^[0-9]{6}$'),
    nome        TEXT NOT NULL,
    popolazione INTEGER NOT NULL CHECK (popolazione >= 0),
    zona        TEXT NOT NULL,
    ambito      TEXT,
    quota       INTEGER CHECK (quota >= 0),
    protocollo  BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX comuni_zona ON comuni (zona);
CREATE INDEX comuni_ambito ON comuni (ambito);

CREATE TABLE referents (
    referent_id TEXT PRIMARY KEY,
    institution TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('stazione_appaltante', 'prefettura', 'comune', 'servizi_sociali', 'tavolo')),
    email       TEXT NOT NULL,
    name        TEXT,
    scope_kind  TEXT NOT NULL CHECK (scope_kind IN ('all', 'comune', 'ambito', 'zona')),
    scope_value TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((scope_kind = 'all') = (scope_value IS NULL))
);
CREATE INDEX referents_role ON referents (role);

-- One row per inbound event ever processed: the idempotency key (CONTRACT §3).
CREATE TABLE inbox (
    source      TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);

-- The transactional outbox: written in the same transaction as the state that caused it.
CREATE TABLE notifications (
    id            UUID PRIMARY KEY,
    kind          TEXT NOT NULL,
    comune_istat  TEXT,
    payload       JSONB NOT NULL,
    urgent        BOOLEAN NOT NULL DEFAULT FALSE,
    undeliverable BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ
);
CREATE INDEX notifications_unpublished ON notifications (created_at) WHERE published_at IS NULL;
CREATE INDEX notifications_kind ON notifications (kind, created_at);

-- One row per (notification, recipient): the mailer's record, so nothing is sent twice.
CREATE TABLE deliveries (
    notification_id UUID NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    email           TEXT NOT NULL,
    referent_id     TEXT NOT NULL,
    name            TEXT,
    institution     TEXT NOT NULL,
    role            TEXT NOT NULL,
    message_id      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    delivered_at    TIMESTAMPTZ,
    -- Set when the server refused this recipient for good (5xx): not retried.
    failed_at       TIMESTAMPTZ,
    smtp_response   TEXT,
    PRIMARY KEY (notification_id, email)
);
CREATE INDEX deliveries_pending ON deliveries (notification_id) WHERE delivered_at IS NULL AND failed_at IS NULL;

CREATE TABLE housing_units (
    unit_id       TEXT PRIMARY KEY,
    comune_istat  TEXT NOT NULL REFERENCES comuni (istat),
    identified_by TEXT NOT NULL,
    last_action   TEXT NOT NULL,
    -- The stazione appaltante holds this unit: sent, and not withdrawn since (H1, H5).
    forwarded     BOOLEAN NOT NULL DEFAULT FALSE,
    details       JSONB NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
