-- Monthly jobs that ran: one row per job and month, so a job runs once per month whatever
-- the number of replicas (the runner also holds an advisory lock while it works).
CREATE TABLE scheduled_runs (
    job     TEXT NOT NULL,
    period  TEXT NOT NULL,
    ran_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job, period)
);
