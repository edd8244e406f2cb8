#!/usr/bin/env bash
# A PostgreSQL primary and a synchronous streaming standby on this machine, for the failover
# tests and the soak. Never touches the machine's own server on 5432.
#
#   scripts/pg-ha.sh start          initdb (first time), start both, wait until the standby is sync
#   scripts/pg-ha.sh stop           stop both (fast)
#   scripts/pg-ha.sh status         each node: port, running, primary/standby, replication state
#   scripts/pg-ha.sh kill-primary   stop the primary at once (immediate: no checkpoint, like a crash)
#   scripts/pg-ha.sh promote        promote the standby; it then commits alone (see below)
#   scripts/pg-ha.sh rejoin         rebuild the stopped node as a standby of the primary, sync again
#   scripts/pg-ha.sh primary-port   the port of the node that accepts writes
#   scripts/pg-ha.sh destroy        stop both and delete their folders
#
# Replication is synchronous (synchronous_standby_names = '*', synchronous_commit = on): the
# primary acknowledges a commit only once the standby has flushed it, so a commit the hub saw
# succeed survives the primary's loss. With asynchronous replication the last commits before a
# crash can be missing on the promoted standby, and "0 lost" cannot hold. The price: while the
# standby is away the primary's commits wait. `promote` therefore sets the new primary's
# synchronous_standby_names to '' (it has no standby to wait for); `rejoin` sets it back once a
# standby streams again.
#
# Environment: PG_HA_DIR (default target/pg-ha), PG_HA_PORTS (default "5441 5442": node 1,
# node 2), PG_HA_BIN (default the newest /usr/lib/postgresql/*/bin). As root the servers run as
# the `postgres` user (PostgreSQL refuses root). PostgreSQL's binaries are installed from Debian
# (postgresql) when missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DIR=${PG_HA_DIR:-target/pg-ha}
read -r -a PORTS <<<"${PG_HA_PORTS:-5441 5442}"
WAIT_SECONDS=${PG_HA_WAIT_SECONDS:-60}

log() { printf '[pg-ha] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

((${#PORTS[@]} == 2)) || die "PG_HA_PORTS must name two ports, e.g. \"5441 5442\"."
for port in "${PORTS[@]}"; do
  [[ $port != 5432 ]] || die "5432 is the machine's own PostgreSQL: choose other ports."
done

find_bin() {
  if [[ -n ${PG_HA_BIN:-} ]]; then echo "$PG_HA_BIN"; return; fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -z $dir ]]; then
    if command -v apt-get >/dev/null && ((EUID == 0)); then
      log "PostgreSQL's binaries are missing: installing postgresql (apt-get)."
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
      dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    fi
  fi
  [[ -n $dir ]] || die "No PostgreSQL server binaries under /usr/lib/postgresql/*/bin and no way to install them: apt-get install postgresql (as root)."
  echo "$dir"
}
BIN=$(find_bin)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

# Runs a command as the servers' owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

if ((EUID == 0)); then
  id postgres >/dev/null 2>&1 || die "Running as root needs a 'postgres' user to run the servers."
  chown postgres: "$DIR"
  # The owner must reach its folders through ours.
  d=$DIR
  while [[ $d != / ]]; do
    d=$(dirname "$d")
    chmod o+x "$d" 2>/dev/null || true
  done
fi

node_dir() { echo "$DIR/node$1"; }
node_port() { echo "${PORTS[$(($1 - 1))]}"; }
other() { echo $((3 - $1)); }

running() { as_owner "$BIN/pg_ctl" status -D "$(node_dir "$1")" >/dev/null 2>&1; }

psql_at() { # node sql
  as_owner "$BIN/psql" -X -q -A -t -h 127.0.0.1 -p "$(node_port "$1")" -U postgres -d postgres -c "$2"
}

in_recovery() { [[ $(psql_at "$1" "SELECT pg_is_in_recovery()" 2>/dev/null) == t ]]; }

# The node that is running and accepts writes, or nothing.
primary_node() {
  local n
  for n in 1 2; do
    if running "$n" && [[ $(psql_at "$n" "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]]; then
      echo "$n"
      return
    fi
  done
}

start_node() {
  local n=$1
  running "$n" && return 0
  as_owner "$BIN/pg_ctl" start -w -t "$WAIT_SECONDS" -D "$(node_dir "$n")" \
    -l "$(node_dir "$n").log" >/dev/null || die "node $n did not start: see $(node_dir "$n").log"
}

init_primary() {
  local n=$1 data
  data=$(node_dir "$n")
  log "initdb node $n (port $(node_port "$n"))."
  as_owner "$BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$data/postgresql.conf" <<EOF

# scripts/pg-ha.sh
listen_addresses = '127.0.0.1'
port = $(node_port "$n")
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
wal_keep_size = '256MB'
hot_standby = on
synchronous_commit = on
synchronous_standby_names = '*'
max_connections = 200
fsync = on
EOF
  cat >>"$data/pg_hba.conf" <<EOF
host replication postgres 127.0.0.1/32 trust
EOF
}

# Makes node `n` a streaming standby of node `from` (a fresh base backup).
init_standby() {
  local n=$1 from=$2 data
  data=$(node_dir "$n")
  rm -rf "$data"
  log "pg_basebackup node $n from node $from (port $(node_port "$from"))."
  as_owner "$BIN/pg_basebackup" -h 127.0.0.1 -p "$(node_port "$from")" -U postgres \
    -D "$data" -R -X stream -c fast >/dev/null
  # The copied configuration names the source's port.
  echo "port = $(node_port "$n")" >>"$data/postgresql.conf"
  echo "synchronous_standby_names = '*'" >>"$data/postgresql.conf"
}

wait_sync() { # primary
  local i state
  for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
    state=$(psql_at "$1" "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null || true)
    [[ $state == *sync* && $state != *async* ]] && return 0
    sleep 0.5
  done
  die "the standby does not stream synchronously from node $1 after ${WAIT_SECONDS} s"
}

set_sync() { # primary names
  psql_at "$1" "ALTER SYSTEM SET synchronous_standby_names = '$2'" >/dev/null
  psql_at "$1" "SELECT pg_reload_conf()" >/dev/null
}

cmd_start() {
  if [[ ! -f $(node_dir 1)/PG_VERSION && ! -f $(node_dir 2)/PG_VERSION ]]; then
    init_primary 1
    start_node 1
    init_standby 2 1
    start_node 2
    wait_sync 1
  else
    local n
    for n in 1 2; do
      [[ -f $(node_dir "$n")/PG_VERSION ]] && start_node "$n"
    done
  fi
  cmd_status
}

cmd_stop() {
  local n
  for n in 2 1; do
    if running "$n"; then
      as_owner "$BIN/pg_ctl" stop -m fast -w -D "$(node_dir "$n")" >/dev/null || true
    fi
  done
}

cmd_status() {
  local n role
  for n in 1 2; do
    if ! running "$n"; then
      role=stopped
    elif in_recovery "$n"; then
      role="standby ($(psql_at "$n" "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null || echo '?'))"
    else
      role="primary ($(psql_at "$n" "SELECT coalesce(string_agg(sync_state, ','), 'no standby') FROM pg_stat_replication" 2>/dev/null || echo '?'))"
    fi
    echo "node$n 127.0.0.1:$(node_port "$n") $role"
  done
}

cmd_kill_primary() {
  local p
  p=$(primary_node)
  [[ -n $p ]] || { log "No primary is running."; return 0; }
  as_owner "$BIN/pg_ctl" stop -m immediate -w -D "$(node_dir "$p")" >/dev/null || true
  log "node $p (port $(node_port "$p")) stopped at once."
}

cmd_promote() {
  local n i
  for n in 1 2; do
    if running "$n" && in_recovery "$n"; then
      as_owner "$BIN/pg_ctl" promote -w -D "$(node_dir "$n")" >/dev/null
      for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        in_recovery "$n" || break
        sleep 0.5
      done
      in_recovery "$n" && die "node $n is still in recovery after ${WAIT_SECONDS} s"
      # Alone now: waiting for a standby that is not there would stop every commit.
      set_sync "$n" ''
      log "node $n promoted: primary on port $(node_port "$n")."
      node_port "$n"
      return 0
    fi
  done
  die "No running standby to promote."
}

cmd_rejoin() {
  local p s
  p=$(primary_node)
  [[ -n $p ]] || die "No primary is running: start or promote one first."
  s=$(other "$p")
  if running "$s"; then
    as_owner "$BIN/pg_ctl" stop -m fast -w -D "$(node_dir "$s")" >/dev/null || true
  fi
  init_standby "$s" "$p"
  start_node "$s"
  set_sync "$p" '*'
  wait_sync "$p"
  cmd_status
}

cmd_primary_port() {
  local p
  p=$(primary_node)
  [[ -n $p ]] || die "No primary is running."
  node_port "$p"
}

cmd_destroy() {
  cmd_stop
  rm -rf "$(node_dir 1)" "$(node_dir 2)" "$(node_dir 1).log" "$(node_dir 2).log"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  kill-primary) cmd_kill_primary ;;
  promote) cmd_promote ;;
  rejoin) cmd_rejoin ;;
  primary-port) cmd_primary_port ;;
  destroy) cmd_destroy ;;
  *)
    echo "usage: $0 start|stop|status|kill-primary|promote|rejoin|primary-port|destroy" >&2
    exit 2
    ;;
esac
