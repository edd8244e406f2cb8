-- The console's audit trail (issue 9): every action an operator takes through the console —
-- who, when, what, on what, how many. No message content: ids and counts only.

CREATE TABLE console_actions (
    id          BIGSERIAL PRIMARY KEY,
    operator    TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('replay', 'purge')),
    -- 'dead', 'parked' or 'all'
    holding     TEXT NOT NULL,
    -- The x-raccordo-dead-id of one message; NULL for all of them.
    target      TEXT,
    affected    INTEGER NOT NULL,
    -- 'done' or the error that stopped the action.
    outcome     TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX console_actions_at ON console_actions (at);
