-- Retention (CONTRACT 1.2 §8, C9): every run of the pruning, daily or by command, dry or
-- not, as counts per kind — what the `privacy` role reads in the console. No subject is
-- named: kinds and counts only. Kept `retention.audit_years`, as the rest of the audit.
CREATE TABLE retention_log (
    id      BIGSERIAL PRIMARY KEY,
    -- The rows of one run share it.
    run_id  UUID NOT NULL,
    kind    TEXT NOT NULL,
    count   BIGINT NOT NULL CHECK (count >= 0),
    dry_run BOOLEAN NOT NULL,
    -- 'daily': the job of one replica; 'command': `raccordo retention run`.
    trigger TEXT NOT NULL CHECK (trigger IN ('daily', 'command')),
    ran_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX retention_log_ran ON retention_log (ran_at);
