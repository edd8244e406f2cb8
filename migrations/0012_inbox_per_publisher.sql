-- Idempotency per publisher (CONTRACT 1.2 §3): the key is (publisher, source, id), so one
-- publisher can never pre-empt or cancel another's event by reusing its source and id; the
-- digest of the event's type and data tells a resend (same digest) from a conflict.
--
-- Keys recorded before 1.2 keep the publisher '' ("any"): they still make a resend of that
-- event a duplicate, whoever sends it, and carry no digest (a resend is never a conflict).
ALTER TABLE inbox ADD COLUMN publisher TEXT NOT NULL DEFAULT '';
ALTER TABLE inbox ADD COLUMN digest BYTEA;
ALTER TABLE inbox ALTER COLUMN publisher DROP DEFAULT;
ALTER TABLE inbox DROP CONSTRAINT inbox_pkey;
ALTER TABLE inbox ADD PRIMARY KEY (publisher, source, event_id);
