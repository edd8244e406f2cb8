-- The Tavolo provinciale asilo and its sportelli (CONTRACT 1.2 §4 "Asylum", A1–A6).
-- A person is known only by `case_key`, the keyed pseudonym of the desk's case number; what
-- identifies them (`person`) is kept in asylum_personal, and only with consent (C1, C9).

-- Comuni that take part in the rotation of domiciles (A3).
ALTER TABLE comuni ADD COLUMN domicilio BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE referents DROP CONSTRAINT referents_role_check;
ALTER TABLE referents ADD CONSTRAINT referents_role_check CHECK (role IN
    ('stazione_appaltante', 'prefettura', 'comune', 'servizi_sociali', 'tavolo', 'sportello_asilo'));

-- One row per case reported as vulnerable (A1): the latest report, and the 12-hour clock (A2).
CREATE TABLE asylum_cases (
    case_key              TEXT PRIMARY KEY,
    desk                  TEXT NOT NULL,
    comune_istat          TEXT NOT NULL REFERENCES comuni (istat),
    categories            TEXT[] NOT NULL,
    consent               BOOLEAN NOT NULL,
    reported_at           TIMESTAMPTZ NOT NULL,
    received_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    publisher             TEXT NOT NULL,
    notification_id       UUID,
    due_at                TIMESTAMPTZ,
    first_intervention_at TIMESTAMPTZ,
    taken_in_charge_at    TIMESTAMPTZ,
    closed_at             TIMESTAMPTZ,
    overdue_at            TIMESTAMPTZ
);
CREATE INDEX asylum_cases_reported ON asylum_cases (reported_at);
CREATE INDEX asylum_cases_open ON asylum_cases (due_at)
    WHERE first_intervention_at IS NULL AND taken_in_charge_at IS NULL AND overdue_at IS NULL;

-- PERSONAL DATA: only with the person's consent.
CREATE TABLE asylum_personal (
    case_key  TEXT PRIMARY KEY REFERENCES asylum_cases (case_key) ON DELETE CASCADE,
    person    JSONB NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE asylum_interventions (
    id          BIGSERIAL PRIMARY KEY,
    case_key    TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('presa_in_carico', 'primo_intervento', 'chiuso')),
    at          TIMESTAMPTZ NOT NULL,
    by_service  TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX asylum_interventions_case ON asylum_interventions (case_key);

-- One row per domicile request (A3): the primary key makes the assignment happen once.
CREATE TABLE asylum_domiciles (
    request_id   TEXT PRIMARY KEY,
    case_key     TEXT NOT NULL,
    desk         TEXT NOT NULL,
    people       INTEGER NOT NULL CHECK (people BETWEEN 1 AND 20),
    requested_at TIMESTAMPTZ NOT NULL,
    comune_istat TEXT REFERENCES comuni (istat),
    assigned_at  TIMESTAMPTZ,
    publisher    TEXT NOT NULL
);
CREATE INDEX asylum_domiciles_assigned ON asylum_domiciles (assigned_at);

-- The smooth weighted round robin's state per comune (A3).
CREATE TABLE asylum_rotation (
    comune_istat   TEXT PRIMARY KEY REFERENCES comuni (istat),
    current_weight BIGINT NOT NULL DEFAULT 0,
    paused_until   DATE,
    assigned       BIGINT NOT NULL DEFAULT 0
);

-- The SPRAR waiting list and placements (A4, A5, A6): the latest state of each case ...
CREATE TABLE asylum_placements (
    case_key     TEXT PRIMARY KEY,
    status       TEXT NOT NULL CHECK (status IN ('waiting', 'placed', 'exited', 'withdrawn')),
    priority     TEXT CHECK (priority IN ('alta', 'media', 'ordinaria')),
    categories   TEXT[] NOT NULL DEFAULT '{}',
    since        DATE NOT NULL,
    desk         TEXT,
    facility_id  TEXT,
    comune_istat TEXT,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX asylum_placements_waiting ON asylum_placements (priority, since) WHERE status = 'waiting';

-- ... and every change, for the annual report.
CREATE TABLE asylum_placement_history (
    id           BIGSERIAL PRIMARY KEY,
    case_key     TEXT NOT NULL,
    status       TEXT NOT NULL,
    priority     TEXT,
    since        DATE NOT NULL,
    desk         TEXT,
    facility_id  TEXT,
    comune_istat TEXT,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX asylum_placement_history_case ON asylum_placement_history (case_key, id);
CREATE INDEX asylum_placement_history_since ON asylum_placement_history (since);
