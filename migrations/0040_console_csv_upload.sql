-- The console's CSV upload (CONTRACT 1.2 §10) is recorded with its replays and purges:
-- `holding` holds the event type, `target` the publisher, `affected` the events. Widening
-- the check keeps the previous release's writes valid.
ALTER TABLE console_actions DROP CONSTRAINT IF EXISTS console_actions_action_check;
ALTER TABLE console_actions ADD CONSTRAINT console_actions_action_check
    CHECK (action IN ('replay', 'purge', 'csv_upload')) NOT VALID;
