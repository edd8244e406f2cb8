#!/usr/bin/env bash
# Runs `raccordo demo` (the whole flow on sample data of the Città Metropolitana di Milano):
# starts RabbitMQ and PostgreSQL if needed, builds the binary, runs it. The dev profile shares
# its build with scripts/test.sh; the demo's load is tiny, so optimisation would only cost time.
# Arguments go to `raccordo demo`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh

# The broker of docker/compose.yml has no guest user; the hub logs in as `raccordo` there.
if [[ -z ${RACCORDO__AMQP__URL:-} ]] && command -v docker >/dev/null &&
  docker compose -f docker/compose.yml ps --status running --services 2>/dev/null | grep -qx rabbitmq; then
  export RACCORDO__AMQP__URL='amqp://raccordo:raccordo@127.0.0.1:5672/%2f'
fi

echo '[demo] cargo build -p raccordo' >&2
cargo build -p raccordo

exec "${CARGO_TARGET_DIR:-target}/debug/raccordo" demo "$@"
