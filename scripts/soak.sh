#!/usr/bin/env bash
# The soak of the README ("Beyond one machine"): the hub for an hour at 100 events/s against a
# three-node RabbitMQ cluster and a PostgreSQL primary with a synchronous standby, all on this
# machine, with faults on a schedule — a broker node killed, a hub killed (kill -9), the hub
# partitioned from the database and from the broker (a proxy that forwards nothing), the
# primary lost and the standby promoted. `raccordo soak` samples memory, p99 and the
# database's size and checks every email; results in bench/soak/.
#
#   scripts/soak.sh                 the hour, release build (the README's figures)
#   scripts/soak.sh --short         3 minutes, same faults compressed, debug build (CI)
#   scripts/soak.sh --seconds N     N seconds (faults at the same fractions of the run)
#   scripts/soak.sh --debug         use the debug build
#
# Every server is the project's own, on ports of its own: the cluster (scripts/rabbit-cluster.sh,
# nodes soak-N@localhost, AMQP 5691-5693), the PostgreSQL pair (scripts/pg-ha.sh, 5451/5452),
# faultproxy in front of each (15691-15693 → the nodes, 15451 → the primary), control ports
# 15991-15994; --short adds 100 to every port and names its nodes soak-short-N, so a short run
# and the hour can run side by side. The machine's RabbitMQ and PostgreSQL are not touched. All
# stop at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=3600
rate=100
profile=release
off=0
name=soak
while (($#)); do
  case $1 in
  --short) seconds=180 rate=50 profile=debug off=100 name=soak-short ;;
  --seconds) seconds=$2; shift ;;
  --rate) rate=$2; shift ;;
  --debug) profile=debug ;;
  *) echo "soak: unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[soak.sh] %s\n' "$*" >&2; }

scripts/services.sh
command -v curl >/dev/null || apt-get install -y curl >/dev/null

if [[ $profile == release ]]; then
  log "cargo build --release (raccordo, faultproxy)"
  cargo build --release -p raccordo --bin raccordo -p raccordo-e2e --bin faultproxy
  bin=target/release
else
  log "cargo build (raccordo, faultproxy)"
  cargo build -p raccordo --bin raccordo -p raccordo-e2e --bin faultproxy
  bin=target/debug
fi

work=target/$name
rabbit=$((5690 + off))  # node N on rabbit + N
pg=$((5451 + off))      # the pair on pg, pg + 1
proxy_port=$((15000 + off)) # proxies on proxy_port + 691..693 (nodes), + 451 (the primary)
control_port=$((15990 + off)) # their controls on control_port + 1..4
export RACCORDO_RABBIT_CLUSTER_DIR=$PWD/$work/rabbit
export RACCORDO_RABBIT_CLUSTER_NAME=$name
export RACCORDO_RABBIT_CLUSTER_PORT_BASE=$rabbit
export PG_HA_DIR=$PWD/$work/pg
export PG_HA_PORTS="$pg $((pg + 1))"
mkdir -p "$work"

proxies=()
cleanup() {
  for pid in "${proxies[@]}"; do kill "$pid" 2>/dev/null || true; done
  scripts/rabbit-cluster.sh wipe >/dev/null 2>&1 || true
  scripts/pg-ha.sh destroy >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "three RabbitMQ nodes ($name-1..3@localhost, AMQP $((rabbit + 1))-$((rabbit + 3))) and a PostgreSQL pair ($pg, $((pg + 1)))"
scripts/rabbit-cluster.sh wipe >/dev/null 2>&1 || true
scripts/pg-ha.sh destroy >/dev/null 2>&1 || true
scripts/rabbit-cluster.sh start
scripts/pg-ha.sh start

proxy() { # LISTEN UPSTREAM CONTROL
  "$bin/faultproxy" --listen "127.0.0.1:$1" --upstream "127.0.0.1:$2" --control "127.0.0.1:$3" \
    >"$work/faultproxy-$1.log" 2>&1 &
  proxies+=($!)
}
for n in 1 2 3; do proxy $((proxy_port + 690 + n)) $((rabbit + n)) $((control_port + n)); done
proxy $((proxy_port + 451)) "$(scripts/pg-ha.sh primary-port)" $((control_port + 4))
for port in $((proxy_port + 691)) $((proxy_port + 692)) $((proxy_port + 693)) $((proxy_port + 451)); do
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done

urls=""
for n in 1 2 3; do urls+="${urls:+,}amqp://guest:guest@127.0.0.1:$((proxy_port + 690 + n))/%2f"; done
export RACCORDO__AMQP__URLS=$urls
export RACCORDO__DATABASE__URL=postgres://postgres@127.0.0.1:$((proxy_port + 451))/raccordo
unset RACCORDO_CONFIG

# The faults, at fractions of the run (an hour: every 5 to 10 minutes).
at() { awk -v s="$seconds" -v f="$1" 'BEGIN { printf "%d", s * f }'; }
control() { echo "curl -fsS -X POST http://127.0.0.1:$1/$2"; }
db=$((control_port + 4))
brokers() {
  echo "$(control $((control_port + 1)) "$1") && $(control $((control_port + 2)) "$1") && $(control $((control_port + 3)) "$1")"
}
faults=$work/faults.txt
cat >"$faults" <<EOF
# seconds  command — written by scripts/soak.sh for a run of $seconds s
$(at 0.08) scripts/rabbit-cluster.sh kill 2
$(at 0.16) scripts/rabbit-cluster.sh start-node 2
$(at 0.25) hub-kill 1
$(at 0.33) $(control $db blackhole)
$(at 0.36) $(control $db restore)
$(at 0.45) scripts/pg-ha.sh kill-primary && scripts/pg-ha.sh promote && curl -fsS -X POST --data "127.0.0.1:\$(scripts/pg-ha.sh primary-port)" http://127.0.0.1:$db/retarget
$(at 0.52) scripts/pg-ha.sh rejoin
$(at 0.60) $(brokers blackhole)
$(at 0.63) $(brokers restore)
$(at 0.72) scripts/rabbit-cluster.sh kill 1
$(at 0.80) scripts/rabbit-cluster.sh start-node 1
$(at 0.88) hub-kill 2
EOF

log "raccordo soak: $rate events/s for $seconds s, $profile build; faults in $faults"
"$bin/raccordo" soak --seconds "$seconds" --rate "$rate" --hubs 2 --faults-file "$faults" \
  --sample-seconds $((seconds >= 1800 ? 15 : 3)) --out bench/soak
