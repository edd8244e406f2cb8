-- C8 (contract 1.2): the consent audit records the validated publisher (the broker's
-- user_id, or 'anonymous') next to the recorded_by it claims; decisions recorded before
-- 1.2 have none. eviction_procedures.consent_recorded_at now holds the time the decision in
-- force counts from (a revocation never earlier than the grants it revoked, no decision
-- later than its arrival), which a later grant must follow.
ALTER TABLE eviction_consents ADD COLUMN publisher TEXT;
-- Set on a revocation applied although it failed validation (C8), with the reason.
ALTER TABLE eviction_consents ADD COLUMN unvalidated TEXT;
