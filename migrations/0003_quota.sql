-- Reception coverage (Protocollo accoglienza art. 2.3, 3.1, 3.2; CONTRACT Q1–Q7).
-- No personal data: facilities and counts only.

-- The newest report of each facility (Q1): coverage is always recomputed from these rows.
CREATE TABLE reception_facilities (
    facility_id    TEXT PRIMARY KEY,
    comune_istat   TEXT NOT NULL REFERENCES comuni (istat),
    reception_kind TEXT NOT NULL CHECK (reception_kind IN ('CAS', 'SPRAR')),
    capacity       INTEGER NOT NULL CHECK (capacity >= 0),
    presences      INTEGER NOT NULL CHECK (presences >= 0),
    as_of          DATE NOT NULL,
    -- The SPRAR project is active; only active SPRAR places count (Q2).
    active         BOOLEAN NOT NULL DEFAULT TRUE,
    received_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reception_facilities_comune ON reception_facilities (comune_istat);

-- The announced state of each comune (Q5, salvaguardia). The worker locks the rows of a
-- whole zona before deciding, so two reports of one zona are decided one after the other
-- and a change of state is announced exactly once.
CREATE TABLE quota_state (
    comune_istat TEXT PRIMARY KEY REFERENCES comuni (istat),
    -- 'comune' or 'zona' while excluded from tenders (Q4); NULL while included.
    rule         TEXT CHECK (rule IN ('comune', 'zona')),
    excluded     BOOLEAN GENERATED ALWAYS AS (rule IS NOT NULL) STORED,
    -- At least one active SPRAR facility (clausola di salvaguardia, an extension).
    safeguard    BOOLEAN NOT NULL DEFAULT FALSE,
    coverage     INTEGER NOT NULL DEFAULT 0,
    quota        INTEGER NOT NULL DEFAULT 0,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
