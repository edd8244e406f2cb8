-- Workers keep the registry (comuni and referents) in memory and read this one row per
-- transaction instead of three queries per event: any change to either table, by an
-- import, an event or a hand-written statement, moves the version on, and a worker that
-- sees a new version loads the registry again before deciding.
CREATE TABLE registry_version (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    version  BIGINT NOT NULL
);
INSERT INTO registry_version (only_row, version) VALUES (TRUE, 1);

CREATE FUNCTION registry_version_bump() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registry_version SET version = version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER comuni_registry_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON comuni
    FOR EACH STATEMENT EXECUTE FUNCTION registry_version_bump();
CREATE TRIGGER referents_registry_version
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON referents
    FOR EACH STATEMENT EXECUTE FUNCTION registry_version_bump();
