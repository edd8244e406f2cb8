#!/usr/bin/env bash
# Real-browser tests of the console (issue 9): Debian's Chromium driven by playwright-core,
# run by node's test runner, against the real `raccordo serve all` with the console on its
# own database, broker prefix and port. Installs what it needs: Chromium from the
# distribution's packages (as root or with passwordless sudo), playwright-core and axe-core with `npm ci`.
# It never skips: without Chromium or Node.js it fails, saying what is missing.
#
# Screenshots of every page go to target/console-screenshots/ (not committed); with
# SCREENSHOTS=docs/console they are written there instead, for the README.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

fail() {
  echo "[browser] $*" >&2
  exit 1
}

if ! command -v chromium >/dev/null; then
  echo '[browser] installing Debian chromium' >&2
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium ||
      fail 'Chromium could not be installed (apt-get install chromium failed): the browser tests cannot run.'
  elif sudo -n true 2>/dev/null; then
    sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium ||
      fail 'Chromium could not be installed (apt-get install chromium failed): the browser tests cannot run.'
  else
    fail 'Chromium is missing and cannot be installed without root or passwordless sudo: run `apt-get install chromium`.'
  fi
fi
CHROMIUM=$(command -v chromium)
command -v node >/dev/null && command -v npm >/dev/null ||
  fail 'Node.js and npm are missing: install them (apt-get install nodejs npm).'
if [[ ! -d tests/browser/node_modules/playwright-core || ! -d tests/browser/node_modules/axe-core ]]; then
  echo '[browser] npm ci (playwright-core, axe-core)' >&2
  (cd tests/browser && npm ci --no-audit --no-fund) || fail 'npm ci failed in tests/browser.'
fi

echo '[browser] cargo build -p raccordo' >&2
cargo build -p raccordo
BIN=$ROOT/${CARGO_TARGET_DIR:-target}/debug/raccordo

ID=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
PREFIX=tb-$ID
DB=raccordo_browser_$ID
WORK=$ROOT/${CARGO_TARGET_DIR:-target}/console-browser/$ID
SHOTS=${SCREENSHOTS:-${CARGO_TARGET_DIR:-target}/console-screenshots}
[[ $SHOTS = /* ]] || SHOTS=$ROOT/$SHOTS
mkdir -p "$WORK" "$SHOTS"
PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
USER_NAME=operatrice
VIEWER_NAME=tavolo
PRIVACY_NAME=dpo
PASSWORD="browser-$ID"
# One user per role (CONTRACT 1.2 §8), all with this run's password.
ENTRIES=
for pair in "$USER_NAME:operator" "$VIEWER_NAME:viewer" "$PRIVACY_NAME:privacy"; do
  ENTRY=$(printf '%s\n' "$PASSWORD" | "$BIN" console user add "${pair%%:*}" --role "${pair##*:}")
  ENTRIES=${ENTRIES:+$ENTRIES, }$ENTRY
done
DB_URL=${RACCORDO__DATABASE__URL:-postgres://postgres@127.0.0.1:5432/raccordo}
DB_URL=${DB_URL%/*}/$DB

cat >"$WORK/config.toml" <<TOML
[amqp]
prefix = "$PREFIX"
queue_type = "classic"
[database]
url = "$DB_URL"
[mail]
transport = "file"
allow_file_transport = true
outbox_dir = "$WORK/outbox"
[publishers]
allow_anonymous = true
[publishers.comune_milano]
types = ["housing.unit.v1"]
comuni = ["015146"]
[eviction]
allow_development_key = true
[http]
addr = "127.0.0.1:0"
[retry]
max_attempts = 3
initial_delay_ms = 100
max_delay_ms = 400
[relay]
poll_ms = 200
[console]
enabled = true
addr = "127.0.0.1:$PORT"
operators = [$ENTRIES]
TOML
export RACCORDO_CONFIG=$WORK/config.toml
unset RACCORDO__DATABASE__URL RACCORDO__AMQP__PREFIX

SERVE_PID=
cleanup() {
  if [[ -n $SERVE_PID ]]; then
    kill -TERM "$SERVE_PID" 2>/dev/null || true
    wait "$SERVE_PID" 2>/dev/null || true
  fi
  if command -v psql >/dev/null; then
    psql "${DB_URL%/*}/postgres" -q -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  # The test's queues (its three exchanges stay: rabbitmqctl cannot delete exchanges).
  if command -v rabbitmqctl >/dev/null; then
    rabbitmqctl list_queues -q --no-table-headers name 2>/dev/null | { grep "^$PREFIX\." || true; } |
      xargs -r -P 4 -n 1 rabbitmqctl delete_queue -q >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

"$BIN" setup >/dev/null
"$BIN" import comuni data/comuni_mi.csv >/dev/null
"$BIN" import referents data/referents_sample.csv >/dev/null
"$BIN" serve all >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  kill -0 "$SERVE_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; fail 'raccordo serve stopped.'; }
  sleep 0.1
done

echo "[browser] node --test tests/browser (console on http://127.0.0.1:$PORT, screenshots in $SHOTS)" >&2
CONSOLE_URL="http://127.0.0.1:$PORT" CONSOLE_USER=$USER_NAME CONSOLE_PASSWORD=$PASSWORD \
  CONSOLE_VIEWER=$VIEWER_NAME CONSOLE_PRIVACY=$PRIVACY_NAME \
  RACCORDO_BIN=$BIN CHROMIUM=$CHROMIUM SCREENSHOTS_DIR=$SHOTS WORK_DIR=$WORK \
  node --test --test-concurrency=1 --test-reporter=tap tests/browser/
