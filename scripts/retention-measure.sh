#!/usr/bin/env bash
# Retention at scale (issue 20, item 1): fills ROWS rows (default 1,000,000) of each growing
# table of a database of its own, all past their retention, then runs `raccordo bench
# --scenario housing` twice: alone, then while `raccordo retention run` prunes them. Prints
# both benches' tables and how long the pruning took. A long run: not part of CI.
#
#   scripts/retention-measure.sh [ROWS]        (RACCORDO_BIN, BENCH_ARGS, OUT to change)
#
# SKIP_C9=1: without the C9 subjects (see below); PRUNE_TO_END=1: wait for the pruning.
# The bench makes a database of its own, so the pruning competes with it for the server
# (CPU, disk, WAL, autovacuum), not for its rows. The figures of the README come from it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROWS=${1:-1000000}
BIN=${RACCORDO_BIN:-target/release/raccordo}
BENCH_ARGS=${BENCH_ARGS:---scenario housing --events 3000 --rates 100,300 --seconds 10 --relay-messages 0}
OUT=${OUT:-target/retention-measure}
DB=raccordo_retention_measure
PSQL_URL=${PSQL_URL:-postgres://postgres@127.0.0.1:5432}

if ! command -v psql >/dev/null; then
  apt-get install -y postgresql-client >/dev/null
fi
if [[ ! -x $BIN ]]; then
  echo "[measure] building $BIN" >&2
  cargo build --release -p raccordo
fi
mkdir -p "$OUT"
scripts/services.sh

export RACCORDO__DATABASE__URL="$PSQL_URL/$DB"
export RACCORDO__AMQP__PREFIX=retention-measure
export RACCORDO__EVICTION__ALLOW_DEVELOPMENT_KEY=true
export RACCORDO__PUBLISHERS__ALLOW_ANONYMOUS=true

psql "$PSQL_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
"$BIN" setup >/dev/null
"$BIN" import comuni data/comuni_mi.csv >/dev/null
"$BIN" import referents data/referents_sample.csv >/dev/null

echo "[measure] filling $ROWS rows of each growing table" >&2
start=$(date +%s)
# SKIP_C9=1 leaves procedures and cases out: C9 goes one subject at a time (C4's path), so
# with them the bench's window sees only C9 at work.
psql "$PSQL_URL/$DB" -v ON_ERROR_STOP=1 -q -v rows="$ROWS" -v skip_c9="${SKIP_C9:-0}" <<'SQL'
SET synchronous_commit = off;
-- Idempotency keys older than inbox_days.
INSERT INTO inbox (publisher, source, event_id, event_type, received_at)
SELECT '', 'urn:measure', 'e' || i, 'housing.unit.v1', now() - interval '500 days'
FROM generate_series(1, :rows) AS i;
-- Notifications past audit_years with one delivered delivery and a timeline event each.
INSERT INTO notifications (id, kind, comune_istat, payload, created_at, published_at)
SELECT md5('n' || i)::UUID, 'housing.offered', '015182', '{"unit_id": "x"}',
       now() - interval '11 years', now() - interval '11 years'
FROM generate_series(1, :rows) AS i;
INSERT INTO deliveries (notification_id, email, referent_id, institution, role, delivered_at, state)
SELECT md5('n' || i)::UUID, 'sa@example.org', 'sa', 'SA', 'stazione_appaltante',
       now() - interval '11 years', 'sent'
FROM generate_series(1, :rows) AS i;
INSERT INTO delivery_events (notification_id, kind, recipient, referent_id, channel, event, at, published_at)
SELECT md5('n' || i)::UUID, 'housing.offered', 'sa@example.org', 'sa', 'email', 'sent',
       now() - interval '11 years', now() - interval '11 years'
FROM generate_series(1, :rows) AS i;
-- Notifications past notification_days: payloads to reduce.
INSERT INTO notifications (id, kind, comune_istat, payload, created_at, published_at)
SELECT md5('r' || i)::UUID, 'housing.ack', '015182', '{"unit_id": "y"}',
       now() - interval '100 days', now() - interval '100 days'
FROM generate_series(1, :rows) AS i;
-- The audit past audit_years.
INSERT INTO console_actions (operator, action, holding, affected, outcome, at)
SELECT 'op', 'replay', 'dead', 1, 'done', now() - interval '11 years'
FROM generate_series(1, :rows) AS i;
INSERT INTO bounce_reports (report_key, outcome, received_at)
SELECT 'k' || i, 'unmatched', now() - interval '11 years'
FROM generate_series(1, :rows) AS i;
\if :skip_c9
\else
-- C9: executed procedures with personal data, their execution 100 days ago.
INSERT INTO eviction_procedures (pseudonym, docket_pseudonym, comune_istat, consent, updated_at)
SELECT encode(sha256(('p' || i)::BYTEA), 'hex'), encode(sha256(('p' || i)::BYTEA), 'hex'),
       '015182', 'granted', now() - interval '100 days'
FROM generate_series(1, :rows) AS i;
INSERT INTO eviction_steps (pseudonym, step, occurred_on, comune_istat)
SELECT encode(sha256(('p' || i)::BYTEA), 'hex'), 'esecuzione', current_date - 100, '015182'
FROM generate_series(1, :rows) AS i;
INSERT INTO eviction_personal (pseudonym, procedure_id, contact)
SELECT encode(sha256(('p' || i)::BYTEA), 'hex'), 'RG-' || i, '{"name": "x"}'
FROM generate_series(1, :rows) AS i;
-- C9: closed asylum cases with their person.
INSERT INTO asylum_cases (case_key, desk, comune_istat, categories, consent, reported_at, publisher, closed_at)
SELECT 'c' || i, 'sportello-rho', '015182', '{salute}', TRUE, now() - interval '200 days',
       'measure', now() - interval '100 days'
FROM generate_series(1, :rows) AS i;
INSERT INTO asylum_personal (case_key, person)
SELECT 'c' || i, '{"name": "x"}'
FROM generate_series(1, :rows) AS i;
\endif
VACUUM ANALYZE;
SQL
echo "[measure] filled in $(($(date +%s) - start)) s" >&2

unset RACCORDO__DATABASE__URL RACCORDO__AMQP__PREFIX
echo "[measure] bench alone" >&2
# shellcheck disable=SC2086
"$BIN" bench $BENCH_ARGS | tee "$OUT/bench-alone.txt"

export RACCORDO__DATABASE__URL="$PSQL_URL/$DB"
export RACCORDO__AMQP__PREFIX=retention-measure
echo "[measure] bench while pruning" >&2
start=$(date +%s)
"$BIN" retention run --format table >"$OUT/retention.txt" 2>"$OUT/retention.err" &
pruning=$!
unset RACCORDO__DATABASE__URL RACCORDO__AMQP__PREFIX
sleep 5
# shellcheck disable=SC2086
"$BIN" bench $BENCH_ARGS | tee "$OUT/bench-pruning.txt"
if kill -0 "$pruning" 2>/dev/null; then
  echo "[measure] the bench ended while the pruning still ran (as intended)" >&2
else
  echo "[measure] WARNING: the pruning ended before the bench: its figures cover part of it" >&2
fi
if [[ ${PRUNE_TO_END:-0} == 1 ]]; then
  wait "$pruning"
  echo "[measure] pruned in $(($(date +%s) - start)) s:" >&2
  cat "$OUT/retention.txt"
else
  # A batch cut short rolls back: nothing half done.
  kill "$pruning" 2>/dev/null || true
  wait "$pruning" 2>/dev/null || true
  echo "[measure] pruning stopped after $(($(date +%s) - start)) s (PRUNE_TO_END=1 waits for it); rows left:" >&2
fi
psql "$PSQL_URL/$DB" -c "SELECT
  (SELECT count(*) FROM inbox) AS inbox,
  (SELECT count(*) FROM notifications WHERE NOT payload ? 'scrubbed') AS unreduced,
  (SELECT count(*) FROM notifications) AS notifications,
  (SELECT count(*) FROM delivery_events) AS delivery_events,
  (SELECT count(*) FROM console_actions) AS console_actions,
  (SELECT count(*) FROM bounce_reports) AS bounce_reports,
  (SELECT count(*) FROM eviction_personal) AS eviction_personal,
  (SELECT count(*) FROM asylum_personal) AS asylum_personal" | tee "$OUT/left.txt"
psql "$PSQL_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
