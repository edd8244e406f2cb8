-- What the annual report (A6) reads by date, so a year of 100,000 cases is read by range
-- rather than scanned. Names of their own, so another slice's indexes never collide.
CREATE INDEX tavolo_report_cases_reported_at ON asylum_cases (reported_at);
CREATE INDEX tavolo_report_history_case ON asylum_placement_history (case_key, since);
CREATE INDEX tavolo_report_history_status ON asylum_placement_history (status, since);
CREATE INDEX tavolo_report_domiciles_assigned ON asylum_domiciles (assigned_at)
    WHERE comune_istat IS NOT NULL;
