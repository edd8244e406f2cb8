-- Ownership of ids (contract 1.2 §3): a unit_id, facility_id or procedure belongs to the
-- comune, and where publishers are configured the publisher, that first used it. An event
-- that would move it elsewhere is dead-lettered naming the owner; an operator moves it with
-- `raccordo ids move`, recorded in id_moves. Rows of before 1.2 have no publisher: the first
-- named publisher that uses them claims them.
ALTER TABLE housing_units ADD COLUMN publisher TEXT;
ALTER TABLE reception_facilities ADD COLUMN publisher TEXT;

CREATE TABLE id_moves (
    id             BIGSERIAL PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('unit', 'facility', 'procedure')),
    -- The unit or facility id; a procedure's pseudonym, never its docket number.
    subject        TEXT NOT NULL,
    from_comune    TEXT NOT NULL,
    to_comune      TEXT NOT NULL REFERENCES comuni (istat),
    from_publisher TEXT,
    to_publisher   TEXT,
    moved_by       TEXT NOT NULL,
    reason         TEXT NOT NULL,
    moved_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX id_moves_subject ON id_moves (kind, subject);
