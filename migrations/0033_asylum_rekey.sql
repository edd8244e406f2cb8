-- A rotation of the pseudonym key (`raccordo eviction rekey`) renames every asylum case
-- too: the tables that point at a case follow its new key in the same statement.
ALTER TABLE asylum_personal DROP CONSTRAINT asylum_personal_case_key_fkey;
ALTER TABLE asylum_personal ADD CONSTRAINT asylum_personal_case_key_fkey
    FOREIGN KEY (case_key) REFERENCES asylum_cases (case_key) ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE asylum_pronta_notices DROP CONSTRAINT asylum_pronta_notices_case_key_fkey;
ALTER TABLE asylum_pronta_notices ADD CONSTRAINT asylum_pronta_notices_case_key_fkey
    FOREIGN KEY (case_key) REFERENCES asylum_cases (case_key) ON DELETE CASCADE ON UPDATE CASCADE;
