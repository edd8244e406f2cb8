-- Eviction procedures (Protocollo escomio; CONTRACT C1-C6).
--
-- C1 is the invariant of these tables: without an active `granted` decision nothing personal
-- is stored. A procedure is known by a keyed pseudonym (HMAC-SHA256 of the docket number
-- under eviction.pseudonym_key); its history is non-personal (steps, dates, comune). The
-- clear docket number and the family's data live only in eviction_personal, only while
-- consent is active, and are deleted on revocation (C4).

CREATE TABLE eviction_procedures (
    pseudonym           TEXT PRIMARY KEY CHECK (pseudonym ~ '^[0-9a-f]{64}$'),
    comune_istat        TEXT NOT NULL REFERENCES comuni (istat),
    -- The citizen's decision in force: none until one is recorded.
    consent             TEXT NOT NULL DEFAULT 'none' CHECK (consent IN ('none', 'granted', 'revoked')),
    -- The eviction_consents row in force (who recorded it, when).
    consent_id          BIGINT,
    consent_recorded_at TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Non-personal history; the statistics (C6) count from here, by occurred_on.
CREATE TABLE eviction_steps (
    id                      BIGSERIAL PRIMARY KEY,
    pseudonym               TEXT NOT NULL REFERENCES eviction_procedures (pseudonym),
    step                    TEXT NOT NULL CHECK (step IN ('intimazione', 'convalida', 'precetto', 'avviso_sloggio', 'accesso', 'esecuzione')),
    occurred_on             DATE NOT NULL,
    next_access_at          TIMESTAMPTZ,
    comune_istat            TEXT NOT NULL REFERENCES comuni (istat),
    info_material_delivered BOOLEAN,
    received_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX eviction_steps_procedure ON eviction_steps (pseudonym, occurred_on);
CREATE INDEX eviction_steps_month ON eviction_steps (occurred_on, comune_istat);

-- Every consent decision received: the audit of who authorised what (recorded_by is the
-- office that collected it, not a person of the family).
CREATE TABLE eviction_consents (
    id           BIGSERIAL PRIMARY KEY,
    pseudonym    TEXT NOT NULL REFERENCES eviction_procedures (pseudonym),
    comune_istat TEXT NOT NULL,
    decision     TEXT NOT NULL CHECK (decision IN ('granted', 'revoked')),
    recorded_by  TEXT NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- False when it arrived after a later decision and so changed nothing.
    applied      BOOLEAN NOT NULL
);
CREATE INDEX eviction_consents_procedure ON eviction_consents (pseudonym, recorded_at);

ALTER TABLE eviction_procedures
    ADD CONSTRAINT eviction_procedures_consent_fk FOREIGN KEY (consent_id) REFERENCES eviction_consents (id);

-- PERSONAL DATA, held only while consent is active; deleted on revocation (C4).
CREATE TABLE eviction_personal (
    pseudonym    TEXT PRIMARY KEY REFERENCES eviction_procedures (pseudonym) ON DELETE CASCADE,
    procedure_id TEXT NOT NULL,
    contact      JSONB,
    household    JSONB,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Which procedure a notification is about and the consent decision that authorised it
-- (audit, issue 4 item 5). The pseudonym, never the docket number.
CREATE TABLE eviction_notifications (
    notification_id UUID PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    pseudonym       TEXT NOT NULL REFERENCES eviction_procedures (pseudonym),
    consent_id      BIGINT NOT NULL REFERENCES eviction_consents (id),
    -- Set once the payload no longer holds personal data (after revocation, or once a
    -- consent_revoked notice has been delivered).
    scrubbed_at     TIMESTAMPTZ
);
CREATE INDEX eviction_notifications_procedure ON eviction_notifications (pseudonym);
