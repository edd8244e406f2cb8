#!/usr/bin/env bash
# Three RabbitMQ nodes on this machine, joined in one cluster, for the cluster tests and the
# soak — never touching the machine's own node (rabbit@localhost, port 5672).
#
#   scripts/rabbit-cluster.sh start          # start the three nodes (if down) and join them
#   scripts/rabbit-cluster.sh stop           # stop them (their data stays, `start` resumes)
#   scripts/rabbit-cluster.sh wipe           # stop them and delete their data
#   scripts/rabbit-cluster.sh status         # each node: up or down, and the cluster's view
#   scripts/rabbit-cluster.sh kill N         # kill -9 node N (a crash); quick, idempotent
#   scripts/rabbit-cluster.sh start-node N   # start node N again (it rejoins); idempotent
#   scripts/rabbit-cluster.sh urls [--env]   # the AMQP URLs, one a line (--env: RACCORDO__AMQP__URLS=…)
#   scripts/rabbit-cluster.sh ctl N ARGS...  # rabbitmqctl against node N (e.g. ctl 1 cluster_status)
#
# Node N is raccordo-N@localhost: AMQP on 568N, distribution on 2568N (another cluster beside
# it: RACCORDO_RABBIT_CLUSTER_NAME, RACCORDO_RABBIT_CLUSTER_PORT_BASE, RACCORDO_RABBIT_CLUSTER_DIR), its files under
# target/rabbit-cluster/node-N (config, mnesia, logs, pid). The nodes and their command-line
# tools use the machine's Erlang cookie (/var/lib/rabbitmq/.erlang.cookie, copied once into
# target/rabbit-cluster/home) and the machine's epmd; nothing else is shared.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NODES=(1 2 3)
BASE="${RACCORDO_RABBIT_CLUSTER_DIR:-$PWD/target/rabbit-cluster}"
SBIN=/usr/lib/rabbitmq/bin
MACHINE_COOKIE=/var/lib/rabbitmq/.erlang.cookie
START_TIMEOUT_S=90

die() {
  echo "rabbit-cluster: $*" >&2
  exit 1
}

need_rabbitmq() {
  if [[ ! -x $SBIN/rabbitmq-server ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      echo "rabbit-cluster: installing rabbitmq-server (Debian package)" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server >/dev/null
    fi
    [[ -x $SBIN/rabbitmq-server ]] ||
      die "RabbitMQ is missing: install the Debian package rabbitmq-server"
  fi
}

# A second cluster (the soak's, beside the tests') takes another name and port base.
NAME=${RACCORDO_RABBIT_CLUSTER_NAME:-raccordo}
PORT_BASE=${RACCORDO_RABBIT_CLUSTER_PORT_BASE:-5680}
[[ $NAME =~ ^[a-z][a-z0-9-]*$ ]] || die "RACCORDO_RABBIT_CLUSTER_NAME: lower-case letters, digits and -"
[[ $PORT_BASE =~ ^[0-9]+$ ]] && ((PORT_BASE >= 1024 && PORT_BASE <= 40000 && PORT_BASE != 5670)) ||
  die "RACCORDO_RABBIT_CLUSTER_PORT_BASE: a number from 1024 to 40000 (not 5670: 5672 is the machine's)"

node_name() { echo "$NAME-$1@localhost"; }
amqp_port() { echo $((PORT_BASE + $1)); }
dist_port() { echo $((20000 + PORT_BASE + $1)); }
node_dir() { echo "$BASE/node-$1"; }

check_index() {
  [[ ${1:-} =~ ^[123]$ ]] || die "node number must be 1, 2 or 3 (got '${1:-}')"
}

# The machine's cookie, readable by root only: a copy under our folder is the HOME of the
# nodes and of rabbitmqctl, so both present the same cookie as the machine's node would.
prepare_home() {
  mkdir -p "$BASE/home"
  if [[ ! -s $BASE/home/.erlang.cookie ]]; then
    [[ -r $MACHINE_COOKIE ]] ||
      die "cannot read $MACHINE_COOKIE (the machine's Erlang cookie): run as root"
    install -m 0400 "$MACHINE_COOKIE" "$BASE/home/.erlang.cookie"
  fi
}

# Environment of node $1 for the server and the command-line tools alike.
node_env() {
  local n=$1 dir
  dir=$(node_dir "$n")
  echo HOME="$BASE/home" \
    RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
    RABBITMQ_DIST_PORT="$(dist_port "$n")" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_PID_FILE="$dir/pid" \
    ERL_EPMD_ADDRESS=127.0.0.1
}

ctl() {
  local n=$1
  shift
  # shellcheck disable=SC2046 # node_env prints NAME=value words without spaces
  env $(node_env "$n") "$SBIN/rabbitmqctl" -n "$(node_name "$n")" "$@"
}

write_config() {
  local n=$1 dir
  dir=$(node_dir "$n")
  mkdir -p "$dir/mnesia" "$dir/log"
  # Our own (empty) env file: the machine's /etc/rabbitmq/rabbitmq-env.conf names its node.
  : >"$dir/rabbitmq-env.conf"
  # No plugins: the management plugin would take the machine's port 15672.
  echo '[].' >"$dir/enabled_plugins"
  cat >"$dir/rabbitmq.conf" <<EOF
# Node $(node_name "$n") of the test cluster (scripts/rabbit-cluster.sh).
listeners.tcp.1 = 127.0.0.1:$(amqp_port "$n")
# Three nodes: a node that finds itself in the minority stops serving rather than diverge.
cluster_partition_handling = pause_minority
log.file.level = info
EOF
}

# The node's OS process id when it runs, else nothing.
running_pid() {
  local n=$1 pidfile pid
  pidfile="$(node_dir "$n")/pid"
  [[ -s $pidfile ]] || return 0
  pid=$(<"$pidfile")
  # The pid may have been reused: the process must be this node's Erlang VM.
  if [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/environ ]] &&
    grep -qzx "RABBITMQ_NODENAME=$(node_name "$n")" "/proc/$pid/environ"; then
    echo "$pid"
  fi
}

launch_node() {
  local n=$1 dir
  dir=$(node_dir "$n")
  if [[ -n $(running_pid "$n") ]]; then
    return 0
  fi
  if ss -ltn "sport = :$(amqp_port "$n")" | grep -q LISTEN; then
    die "port $(amqp_port "$n") is taken by another process: node $n cannot start"
  fi
  write_config "$n"
  rm -f "$dir/pid"
  # shellcheck disable=SC2046
  env $(node_env "$n") setsid "$SBIN/rabbitmq-server" >>"$dir/log/stdout.log" 2>&1 </dev/null &
}

await_node() {
  local n=$1
  if ! ctl "$n" wait "$(node_dir "$n")/pid" --timeout "$START_TIMEOUT_S" >/dev/null 2>&1; then
    die "node $n did not start within ${START_TIMEOUT_S}s: see $(node_dir "$n")/log"
  fi
}

# Whether node $1 counts node 1 among the cluster's members.
joined() {
  ctl "$1" cluster_status --formatter json 2>/dev/null | grep -q "\"$(node_name 1)\""
}

join_node() {
  local n=$1
  joined "$n" && return 0
  local log
  log="$(node_dir "$n")/log/join.log"
  {
    ctl "$n" stop_app &&
      ctl "$n" reset &&
      ctl "$n" join_cluster "$(node_name 1)" &&
      ctl "$n" start_app
  } >>"$log" 2>&1 || die "node $n could not join $(node_name 1): see $log"
  echo "rabbit-cluster: node $n joined $(node_name 1)" >&2
}

cmd_start() {
  need_rabbitmq
  prepare_home
  local n
  for n in "${NODES[@]}"; do launch_node "$n"; done
  for n in "${NODES[@]}"; do await_node "$n"; done
  for n in 2 3; do join_node "$n"; done
  cmd_urls
}

cmd_stop() {
  local n pid
  for n in "${NODES[@]}"; do
    pid=$(running_pid "$n")
    [[ -n $pid ]] || continue
    # Graceful; a node that does not stop in time is killed.
    ctl "$n" stop --timeout 30 >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true
    wait_gone "$pid"
    rm -f "$(node_dir "$n")/pid"
  done
}

wait_gone() {
  local pid=$1 i
  for i in $(seq 1 100); do
    [[ -d /proc/$pid ]] || return 0
    sleep 0.1
  done
  die "process $pid is still there"
}

cmd_kill() {
  local n=$1 pid
  check_index "$n"
  pid=$(running_pid "$n")
  if [[ -z $pid ]]; then
    echo "rabbit-cluster: node $n is already down" >&2
    return 0
  fi
  kill -9 "$pid"
  wait_gone "$pid"
  rm -f "$(node_dir "$n")/pid"
  echo "rabbit-cluster: node $n killed (was pid $pid)" >&2
}

cmd_start_node() {
  local n=$1
  check_index "$n"
  need_rabbitmq
  prepare_home
  [[ -d $(node_dir "$n")/mnesia ]] || die "node $n was never started: run 'start' first"
  launch_node "$n"
  await_node "$n"
  echo "rabbit-cluster: node $n up" >&2
}

cmd_status() {
  local n pid any=""
  for n in "${NODES[@]}"; do
    pid=$(running_pid "$n")
    if [[ -n $pid ]]; then
      echo "node $n $(node_name "$n") amqp 127.0.0.1:$(amqp_port "$n") up (pid $pid)"
      any=$n
    else
      echo "node $n $(node_name "$n") amqp 127.0.0.1:$(amqp_port "$n") down"
    fi
  done
  if [[ -n $any ]]; then
    echo "running nodes (as node $any sees them):"
    ctl "$any" cluster_status --formatter json 2>/dev/null |
      sed -n 's/.*"running_nodes":\[\([^]]*\)\].*/\1/p' | tr -d '"' | tr ',' '\n' | sed 's/^/  /'
  fi
}

cmd_urls() {
  local n urls=()
  for n in "${NODES[@]}"; do
    urls+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/%2f")
  done
  if [[ ${1:-} == --env ]]; then
    (
      IFS=,
      echo "RACCORDO__AMQP__URLS=${urls[*]}"
    )
  else
    printf '%s\n' "${urls[@]}"
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  wipe)
    cmd_stop
    rm -rf "$BASE"
    ;;
  status) cmd_status ;;
  kill) cmd_kill "${2:-}" ;;
  start-node) cmd_start_node "${2:-}" ;;
  urls) cmd_urls "${2:-}" ;;
  ctl)
    check_index "${2:-}"
    prepare_home
    ctl "$2" "${@:3}"
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
