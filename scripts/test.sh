#!/usr/bin/env bash
# Runs every test of the workspace against real RabbitMQ and PostgreSQL (started if needed).
# Uses cargo-nextest when installed, else cargo test; then the console's browser tests
# (scripts/test-browser.sh). Arguments go to the Rust test runner.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh

# The broker of docker/compose.yml has no guest user; the hub logs in as `raccordo` there.
if [[ -z ${RACCORDO__AMQP__URL:-} ]] && command -v docker >/dev/null &&
  docker compose -f docker/compose.yml ps --status running --services 2>/dev/null | grep -qx rabbitmq; then
  export RACCORDO__AMQP__URL='amqp://raccordo:raccordo@127.0.0.1:5672/%2f'
fi

# Process-level tests (kill -9, SIGTERM, the leak test) run the real binary next to them.
echo '[test] cargo build -p raccordo' >&2
cargo build -p raccordo

# The broker-restart tests stop and start the machine's RabbitMQ: they run alone, after
# the parallel suite, so they never disturb another test. The cluster tests start three
# RabbitMQ nodes of their own (scripts/rabbit-cluster.sh, ports 5681-5683) and kill them:
# alone too, one at a time (both kill nodes of the same cluster).
if cargo nextest --version >/dev/null 2>&1; then
  # nextest runs the lib, bin and test targets; not benches (a harness = false bench has no
  # test list for it to read).
  echo '[test] cargo nextest run --workspace (all but broker_restart_* and cluster_*)' >&2
  cargo nextest run --workspace -E 'not test(/broker_restart_/) and not test(/cluster_/)' "$@"
  echo '[test] cargo nextest run -p raccordo-e2e (broker_restart_*, alone)' >&2
  cargo nextest run -p raccordo-e2e -E 'test(/broker_restart_/)' "$@"
  echo '[test] cargo nextest run -p raccordo-e2e (cluster_*, alone, one at a time)' >&2
  cargo nextest run -p raccordo-e2e -E 'test(/cluster_/)' --test-threads 1 "$@"
else
  echo '[test] cargo test --workspace --all-targets (all but broker_restart_* and cluster_*)' >&2
  cargo test --workspace --all-targets "$@" -- --skip broker_restart_ --skip cluster_
  echo '[test] cargo test -p raccordo-e2e broker_restart_ (alone)' >&2
  cargo test -p raccordo-e2e --test e2e "$@" -- broker_restart_ --test-threads=1
  echo '[test] cargo test -p raccordo-e2e cluster_ (alone, one at a time)' >&2
  cargo test -p raccordo-e2e --test e2e "$@" -- cluster_ --test-threads=1
fi

# The console in a real browser (Debian's Chromium, installed if missing; never skipped).
echo '[test] scripts/test-browser.sh' >&2
scripts/test-browser.sh
