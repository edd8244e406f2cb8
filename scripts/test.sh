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

if cargo nextest --version >/dev/null 2>&1; then
  # nextest runs the lib, bin and test targets; not benches (a harness = false bench has no
  # test list for it to read).
  echo '[test] cargo nextest run --workspace' >&2
  cargo nextest run --workspace "$@"
else
  echo '[test] cargo test --workspace --all-targets' >&2
  cargo test --workspace --all-targets "$@"
fi

# The console in a real browser (Debian's Chromium, installed if missing; never skipped).
echo '[test] scripts/test-browser.sh' >&2
scripts/test-browser.sh
