-- Pseudonym keys that can be rotated (issue 7; CONTRACT §2, version 1.1).
--
-- The fingerprint of the key chain the pseudonyms were made with: the chain hashed over a
-- fixed text. A worker with another chain (a rotation it has not heard of, a wrong key)
-- refuses to write, so one database never mixes pseudonyms of two keys.
CREATE TABLE eviction_key (
    singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    fingerprint TEXT NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    keys        INTEGER NOT NULL CHECK (keys >= 1),
    changed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- `raccordo eviction rekey` rewrites every pseudonym in one transaction: the tables that
-- point at a procedure follow it.
ALTER TABLE eviction_steps
    DROP CONSTRAINT eviction_steps_pseudonym_fkey,
    ADD CONSTRAINT eviction_steps_pseudonym_fkey FOREIGN KEY (pseudonym)
        REFERENCES eviction_procedures (pseudonym) ON UPDATE CASCADE;
ALTER TABLE eviction_consents
    DROP CONSTRAINT eviction_consents_pseudonym_fkey,
    ADD CONSTRAINT eviction_consents_pseudonym_fkey FOREIGN KEY (pseudonym)
        REFERENCES eviction_procedures (pseudonym) ON UPDATE CASCADE;
ALTER TABLE eviction_personal
    DROP CONSTRAINT eviction_personal_pseudonym_fkey,
    ADD CONSTRAINT eviction_personal_pseudonym_fkey FOREIGN KEY (pseudonym)
        REFERENCES eviction_procedures (pseudonym) ON UPDATE CASCADE ON DELETE CASCADE;
ALTER TABLE eviction_notifications
    DROP CONSTRAINT eviction_notifications_pseudonym_fkey,
    ADD CONSTRAINT eviction_notifications_pseudonym_fkey FOREIGN KEY (pseudonym)
        REFERENCES eviction_procedures (pseudonym) ON UPDATE CASCADE;
