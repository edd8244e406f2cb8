-- Pronta accoglienza (CONTRACT A1, A2): every notice sent for a case, so that an
-- acknowledgement of any of them stops the case's 12-hour clock, and the one overdue
-- notice of each case.

CREATE TABLE asylum_pronta_notices (
    notification_id UUID PRIMARY KEY,
    case_key        TEXT NOT NULL REFERENCES asylum_cases (case_key) ON DELETE CASCADE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX asylum_pronta_notices_case ON asylum_pronta_notices (case_key);

-- The asylum.intervention_overdue written when the clock ran out (A2), with overdue_at.
ALTER TABLE asylum_cases ADD COLUMN overdue_notification_id UUID;

-- When the clock stopped in time: the first presa_in_carico or primo_intervento dated
-- before due_at, or the first acknowledgement before it. A stopped or overdue case leaves
-- the index the clock scans, so the scan stays as small as the cases still waiting.
ALTER TABLE asylum_cases ADD COLUMN clock_stopped_at TIMESTAMPTZ;
CREATE INDEX asylum_cases_clock ON asylum_cases (due_at)
    WHERE overdue_at IS NULL AND clock_stopped_at IS NULL;
