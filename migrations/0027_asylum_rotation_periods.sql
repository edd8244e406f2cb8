-- Rule A3, the rotation of domiciles (CONTRACT 1.2 §4 "Asylum"): its lock and its periods.

-- A period is one composition of the rotation: the comuni in it (marked domicilio, not
-- paused) and their populations. Each assignment names its period, so a comune's fair share
-- of any span is exact: the sum over periods of (assignments × population / total).
CREATE TABLE asylum_rotation_periods (
    id         BIGSERIAL PRIMARY KEY,
    -- SHA-256 of the composition, to tell at a glance whether it changed.
    digest     TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE asylum_rotation_period_members (
    period_id    BIGINT NOT NULL REFERENCES asylum_rotation_periods (id),
    comune_istat TEXT NOT NULL,
    population   BIGINT NOT NULL CHECK (population > 0),
    PRIMARY KEY (period_id, comune_istat)
);

-- One row: locked by every assignment, so assignments are decided one after the other
-- whatever the replicas (exactly one assignment per request, credits never lost).
CREATE TABLE asylum_rotation_state (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    period_id BIGINT REFERENCES asylum_rotation_periods (id)
);
INSERT INTO asylum_rotation_state (singleton) VALUES (TRUE);

ALTER TABLE asylum_domiciles ADD COLUMN period_id BIGINT REFERENCES asylum_rotation_periods (id);

-- The report of a year reads assignments by date.
CREATE INDEX asylum_domiciles_assigned_at ON asylum_domiciles (assigned_at)
    WHERE assigned_at IS NOT NULL;
