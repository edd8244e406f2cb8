-- Upgrades under running replicas (issue 20): migrations expand, then contract.
--
-- A release only adds to the schema (tables, nullable or defaulted columns, indexes), so the
-- previous release's processes keep working while the new one migrates. What a release stops
-- using is removed one release later, by a migration marked `-- contract:` that also raises
-- this floor: the last migration a binary must know to run on this schema. A binary whose
-- newest migration is below the floor refuses to start (it would use what was removed); one
-- at or above it runs, even when the database has newer migrations it does not know.
CREATE TABLE schema_floor (
    singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version     BIGINT NOT NULL,
    raised_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- v0.7.0 (migration 33) uses everything the schema has: nothing was contracted yet.
INSERT INTO schema_floor (version) VALUES (33);
