-- What the annual report (A6) reads by date beyond 0024's indexes, so a year of 100,000
-- cases is read by range rather than scanned: placement facts by status and day, and each
-- case's facts by day (the wait before a placement, the stay before an exit).
CREATE INDEX tavolo_report_history_status ON asylum_placement_history (status, since);
CREATE INDEX tavolo_report_history_case ON asylum_placement_history (case_key, since);
