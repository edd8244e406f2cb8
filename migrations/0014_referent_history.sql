-- Every change of a referent is kept: who, when, before, after (CONTRACT §4 registry,
-- version 1.2). A trigger writes it, so no path can forget: a registry event, an import, a
-- command or a statement typed by hand. The writer names itself for its transaction with
-- `SELECT set_config('raccordo.actor', …, true)` — the validated publisher of the event,
-- `import:<file>`, `cli` —; a change without one is recorded as `db:<database user>`.
CREATE TABLE referent_history (
    id          BIGSERIAL PRIMARY KEY,
    referent_id TEXT NOT NULL,
    -- The statement's own time: several changes in one transaction keep their order.
    changed_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('created', 'changed', 'removed')),
    -- The row as it was and as it became, without `updated_at`; NULL when there was none.
    before      JSONB,
    after       JSONB
);
CREATE INDEX referent_history_referent ON referent_history (referent_id, id);

CREATE FUNCTION referent_history_actor() RETURNS TEXT
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(current_setting('raccordo.actor', true), ''), 'db:' || session_user)
$$;

CREATE FUNCTION referent_history_record() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_row JSONB;
    new_row JSONB;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_row := to_jsonb(OLD) - 'updated_at';
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_row := to_jsonb(NEW) - 'updated_at';
    END IF;
    -- An import run again rewrites every row: only a real change is history.
    IF TG_OP = 'UPDATE' AND old_row = new_row THEN
        RETURN NULL;
    END IF;
    INSERT INTO referent_history (referent_id, actor, action, before, after)
    VALUES (
        COALESCE(new_row ->> 'referent_id', old_row ->> 'referent_id'),
        referent_history_actor(),
        CASE TG_OP WHEN 'INSERT' THEN 'created' WHEN 'UPDATE' THEN 'changed' ELSE 'removed' END,
        old_row,
        new_row
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER referents_history
    AFTER INSERT OR UPDATE OR DELETE ON referents
    FOR EACH ROW EXECUTE FUNCTION referent_history_record();

-- TRUNCATE fires no row trigger: each row is recorded as removed before it goes.
CREATE FUNCTION referent_history_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO referent_history (referent_id, actor, action, before, after)
    SELECT r.referent_id, referent_history_actor(), 'removed', to_jsonb(r) - 'updated_at', NULL
    FROM referents r;
    RETURN NULL;
END
$$;

CREATE TRIGGER referents_history_truncate
    BEFORE TRUNCATE ON referents
    FOR EACH STATEMENT EXECUTE FUNCTION referent_history_truncate();
