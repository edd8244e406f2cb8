-- Court-keyed pseudonyms (contract 1.2 §3): a procedure is the pair (court, docket), the
-- court being the `source` of its court's events; two courts' equal docket numbers are two
-- procedures. Each procedure keeps the pseudonym of its docket alone (docket_pseudonym) so
-- that a consent decision, which comes from a desk and not from the court, finds it.
--
-- The re-key of existing procedures: the hub never kept docket numbers, so their court-keyed
-- pseudonym cannot be computed here. They stay under their docket pseudonym with no court
-- ("court unknown"); the first step a court sends for that docket in that comune adopts
-- the procedure and renames it to its court-keyed pseudonym (the tables that point at it
-- follow: ON UPDATE CASCADE).
ALTER TABLE eviction_procedures ADD COLUMN docket_pseudonym TEXT;
ALTER TABLE eviction_procedures ADD COLUMN court TEXT;
UPDATE eviction_procedures SET docket_pseudonym = pseudonym;
ALTER TABLE eviction_procedures ALTER COLUMN docket_pseudonym SET NOT NULL;
ALTER TABLE eviction_procedures
    ADD CONSTRAINT eviction_procedures_docket_pseudonym CHECK (docket_pseudonym ~ '^[0-9a-f]{64}$');
CREATE INDEX eviction_procedures_docket ON eviction_procedures (docket_pseudonym, comune_istat);
