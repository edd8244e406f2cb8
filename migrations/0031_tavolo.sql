-- The Tavolo provinciale asilo's own records (contract 1.2 §4 A6): what the annual
-- relazione-report counts besides the hub's own facts. Kept with `raccordo tavolo …`.

-- A meeting of the Tavolo: when, at which level, who was invited and who came.
CREATE TABLE tavolo_meetings (
    id           BIGSERIAL PRIMARY KEY,
    held_on      DATE NOT NULL,
    title        TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    -- The sheet's three levels: politico, organizzativo, tecnico-operativo.
    level        TEXT NOT NULL CHECK (level IN ('politico', 'organizzativo', 'tecnico')),
    invited      INTEGER NOT NULL CHECK (invited >= 1),
    present      INTEGER NOT NULL CHECK (present >= 0 AND present <= invited),
    -- The institutions present (nodes of the network), not people.
    participants TEXT[] NOT NULL DEFAULT '{}',
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tavolo_meetings_held_on ON tavolo_meetings (held_on);

-- A formal protocol signed, or a shared criterion adopted (indicators 2 and 3 of the sheet).
CREATE TABLE tavolo_protocols (
    id          BIGSERIAL PRIMARY KEY,
    signed_on   DATE NOT NULL,
    title       TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    kind        TEXT NOT NULL CHECK (kind IN ('protocollo', 'criterio')),
    signatories TEXT[] NOT NULL DEFAULT '{}',
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tavolo_protocols_signed_on ON tavolo_protocols (signed_on);

-- An objective of a year: a target for one of the report's indicators, or a goal in words
-- (indicator NULL). One target per indicator and year: adding it again updates it.
CREATE TABLE tavolo_objectives (
    id          BIGSERIAL PRIMARY KEY,
    year        INTEGER NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    indicator   TEXT,
    target      DOUBLE PRECISION,
    description TEXT NOT NULL CHECK (length(description) BETWEEN 1 AND 500),
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((indicator IS NULL) = (target IS NULL))
);
CREATE UNIQUE INDEX tavolo_objectives_indicator ON tavolo_objectives (year, indicator)
    WHERE indicator IS NOT NULL;
