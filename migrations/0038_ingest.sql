-- HTTP ingestion (CONTRACT 1.2 §10).
--
-- Bearer tokens of the publishers: only a SHA-256 of each is kept (the token has 256 bits
-- of randomness, so a fast hash is enough); `raccordo publishers token add` shows it once.
CREATE TABLE publisher_tokens (
    id          BIGSERIAL PRIMARY KEY,
    publisher   TEXT NOT NULL,
    hash        BYTEA NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX publisher_tokens_publisher ON publisher_tokens (publisher);

-- The order of GET /v1/stream: the relay numbers what it published, one relay at a time
-- (a transaction-level advisory lock), so a number is visible only after every smaller
-- one and a cursor never skips a row committed late. Expand-only: a relay of the previous
-- release leaves it NULL, and such rows are not streamed.
ALTER TABLE notifications ADD COLUMN stream_seq BIGINT;
CREATE SEQUENCE notification_stream_seq;
