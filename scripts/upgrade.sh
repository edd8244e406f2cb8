#!/usr/bin/env bash
# The upgrade from the previous release, with its data (issue 20, item 2).
#
#   scripts/upgrade.sh fixture [--binary RACCORDO] [--out FILE]
#       Fills a database through the previous release's binary (setup, imports, serve, publish
#       of every flow's sample events, the weekly list sent), waits until every email is sent,
#       stops it and writes `pg_dump --format=custom` of it to FILE (default: the committed
#       tests/fixtures/upgrade/v0.7.0.dump). Without --binary it builds the tag first.
#   scripts/upgrade.sh check [--binary RACCORDO]
#       The long command: builds the previous release from its tag (unless --binary), makes a
#       fresh fixture with it under target/upgrade/, migrates that database with this release
#       while the previous release's replica runs and checks the replica still sends, then runs
#       the upgrade tests against the fresh fixture (RACCORDO_UPGRADE_FIXTURE); CI runs the same
#       tests on the committed fixture.
#
# The previous release is built from its git tag in a worktree under target/upgrade/, sharing
# target/ so dependencies are not compiled again (its own crates are: about 5 min on 2 cores).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

previous_tag=v0.7.0
fixture_default=tests/fixtures/upgrade/${previous_tag}.dump
work=$root/target/upgrade
database=raccordo_upgrade_fixture
prefix=upgrade-fixture-$$
serve=''
new_binary=''

die() {
  echo "upgrade.sh: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y "$2" >/dev/null
  fi
  command -v "$1" >/dev/null 2>&1 || die "$1 is missing: install Debian's $2"
}

# pg_dump of the server's major version (Debian keeps one per version).
pg_tool() {
  local major
  major=$(psql -h 127.0.0.1 -U postgres -d postgres -XAtc 'SHOW server_version_num')
  major=$((major / 10000))
  local tool=/usr/lib/postgresql/$major/bin/$1
  [[ -x $tool ]] || die "$1 of PostgreSQL $major is missing: apt-get install -y postgresql-client-$major"
  echo "$tool"
}

# Builds the previous release from its tag; prints the binary's path.
build_previous() {
  local tree=$work/$previous_tag
  git rev-parse -q --verify "refs/tags/$previous_tag" >/dev/null || die "the tag $previous_tag is missing"
  if [[ ! -d $tree ]]; then
    mkdir -p "$work"
    git worktree add --detach "$tree" "$previous_tag" >&2
  fi
  echo "[upgrade] cargo build -p raccordo at $previous_tag (shared target/)" >&2
  CARGO_TARGET_DIR=$root/target cargo build -p raccordo --manifest-path "$tree/Cargo.toml" >&2
  cp "$root/target/debug/raccordo" "$work/raccordo-$previous_tag"
  # The shared target's binary is this tree's again.
  echo "[upgrade] cargo build -p raccordo (this tree)" >&2
  cargo build -p raccordo >&2
  echo "$work/raccordo-$previous_tag"
}

psql_fixture() {
  psql -h 127.0.0.1 -U postgres -d "$database" -XAtc "$1"
}

# Waits until the hub published every notification and sent or failed every delivery, and
# that stayed so for 3 s (at most 120 s).
wait_quiet() {
  local last='' same=0
  for _ in $(seq 1 240); do
    local now
    now=$(psql_fixture "SELECT (SELECT count(*) FROM notifications WHERE published_at IS NULL)
      || '/' || (SELECT count(*) FROM deliveries WHERE delivered_at IS NULL AND failed_at IS NULL)
      || '/' || (SELECT count(*) FROM deliveries) || '/' || (SELECT count(*) FROM inbox)")
    if [[ $now == "$last" && $now == 0/0/* ]]; then
      same=$((same + 1))
      [[ $same -ge 6 ]] && return 0
    else
      same=0
    fi
    last=$now
    sleep 0.5
  done
  die "the previous release did not settle: unpublished/pending/deliveries/inbox = $last"
}

cleanup_broker() {
  # Only this run's queues (its own prefix); rabbitmqctl reads stdin, so not from the loop's.
  rabbitmqctl -q list_queues name 2>/dev/null | grep "^$prefix\." | while read -r queue; do
    rabbitmqctl -q delete_queue "$queue" </dev/null >/dev/null 2>&1 || true
  done
  # rabbitmqctl cannot delete exchanges; without the management plugin they stay (3 empty ones).
  local left
  left=$(rabbitmqctl -q list_exchanges name 2>/dev/null | grep "^$prefix\." | tr '\n' ' ' || true)
  [[ -z $left ]] || echo "[upgrade] exchanges left on the broker (delete them with rabbitmqadmin if wanted): $left" >&2
}

# Expand, then contract: this release migrates the database under the previous release's
# running replica, which must go on processing events (a new offer emailed, nothing stuck).
old_replica_on_new_schema() {
  local binary=$1 before after
  echo "[upgrade] migrating with this release under the running $previous_tag replica" >&2
  "$new_binary" setup
  before=$(psql_fixture "SELECT count(*) FROM deliveries WHERE delivered_at IS NOT NULL")
  printf '%s\n' '{"specversion":"1.0","id":"upgrade-check-1","source":"urn:comune:015146:protocollo","type":"housing.unit.v1","data":{"unit_id":"UPG-CHECK-1","action":"offered","comune_istat":"015146","address":"Via della Prova 1, Milano","places":3,"reception_kind":"CAS","building_type":"appartamento","owner_declaration":true}}' |
    "$binary" publish -
  wait_quiet
  after=$(psql_fixture "SELECT count(*) FROM deliveries WHERE delivered_at IS NOT NULL")
  [[ $after -gt $before ]] || die "the $previous_tag replica sent nothing on the migrated schema"
  echo "[upgrade] the running $previous_tag replica sent $((after - before)) email(s) on the schema at migration $(psql_fixture 'SELECT max(version) FROM _sqlx_migrations')" >&2
}

make_fixture() {
  local binary=$1 out=$2 port=$((20000 + RANDOM % 20000))
  need curl curl
  local pg_dump
  pg_dump=$(pg_tool pg_dump)
  export RACCORDO__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$database
  export RACCORDO__AMQP__PREFIX=$prefix RACCORDO__AMQP__QUEUE_TYPE=classic
  export RACCORDO__MAIL__TRANSPORT=file RACCORDO__MAIL__ALLOW_FILE_TRANSPORT=true
  export RACCORDO__MAIL__OUTBOX_DIR=$work/eml-$$
  export RACCORDO__HTTP__ADDR=127.0.0.1:$port
  export RACCORDO__PUBLISHERS__ALLOW_ANONYMOUS=true RACCORDO__EVICTION__ALLOW_DEVELOPMENT_KEY=true
  unset RACCORDO_CONFIG
  psql -h 127.0.0.1 -U postgres -d postgres -Xqc "DROP DATABASE IF EXISTS $database WITH (FORCE)"
  mkdir -p "$work"
  "$binary" setup
  "$binary" import comuni data/comuni_mi.csv
  for referents in data/referents_sample.csv data/demo/referents_asylum.csv data/demo/referents_pec.csv; do
    "$binary" import referents "$referents"
  done
  "$binary" serve all >"$work/serve-$$.log" 2>&1 &
  serve=$!
  trap 'kill "$serve" 2>/dev/null || true; cleanup_broker' EXIT
  for _ in $(seq 1 60); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.5
  done
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || die "the previous release is not ready (see $work/serve-$$.log)"
  # Each flow in turn, so that each is quiet before the next (eviction consents after steps).
  for events in housing occupancy evictions asylum; do
    # The demo's files hold deliberate mistakes: publish refuses those lines (exit 1).
    "$binary" publish "data/demo/$events.ndjson" || true
    wait_quiet
  done
  "$binary" report priorities --send
  wait_quiet
  mkdir -p "$(dirname "$out")"
  "$pg_dump" -h 127.0.0.1 -U postgres --format=custom --no-owner --no-privileges -f "$out" "$database"
  echo "[upgrade] $out: $(psql_fixture 'SELECT count(*) FROM notifications') notifications, $(psql_fixture 'SELECT count(*) FROM deliveries') deliveries, migration $(psql_fixture 'SELECT max(version) FROM _sqlx_migrations')" >&2
  [[ -z $new_binary ]] || old_replica_on_new_schema "$binary"
  kill -TERM "$serve"
  wait "$serve" || die "the previous release did not stop cleanly (see $work/serve-$$.log)"
  trap cleanup_broker EXIT
  psql -h 127.0.0.1 -U postgres -d postgres -Xqc "DROP DATABASE IF EXISTS $database WITH (FORCE)"
  rm -rf "$RACCORDO__MAIL__OUTBOX_DIR"
}

command=${1:-}
shift || true
case $command in
  fixture)
    binary='' out=$fixture_default
    while [[ $# -gt 0 ]]; do
      case $1 in
        --binary) binary=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) die "unknown argument $1" ;;
      esac
    done
    [[ -n $binary ]] || binary=$(build_previous)
    make_fixture "$binary" "$out"
    ;;
  check)
    binary=''
    [[ ${1:-} != --binary ]] || binary=$2
    [[ -n $binary ]] || binary=$(build_previous)
    new_binary=$root/target/debug/raccordo
    make_fixture "$binary" "$work/$previous_tag.dump"
    RACCORDO_UPGRADE_FIXTURE=$work/$previous_tag.dump \
      cargo nextest run -p raccordo-e2e -E 'test(/upgrade_/)'
    ;;
  *)
    sed -n '2,14p' "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
