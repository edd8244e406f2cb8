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
# 15991-15994. The machine's RabbitMQ and PostgreSQL are not touched. All stop at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=3600
rate=100
profile=release
while (($#)); do
  case $1 in
  --short) seconds=180 rate=50 profile=debug ;;
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

export RACCORDO_RABBIT_CLUSTER_DIR=$PWD/target/soak/rabbit
export RACCORDO_RABBIT_CLUSTER_NAME=soak
export RACCORDO_RABBIT_CLUSTER_PORT_BASE=5690
export PG_HA_DIR=$PWD/target/soak/pg
export PG_HA_PORTS="5451 5452"
mkdir -p target/soak

proxies=()
cleanup() {
  for pid in "${proxies[@]}"; do kill "$pid" 2>/dev/null || true; done
  scripts/rabbit-cluster.sh wipe >/dev/null 2>&1 || true
  scripts/pg-ha.sh destroy >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "three RabbitMQ nodes (soak-1..3@localhost) and a PostgreSQL pair"
scripts/rabbit-cluster.sh wipe >/dev/null 2>&1 || true
scripts/pg-ha.sh destroy >/dev/null 2>&1 || true
scripts/rabbit-cluster.sh start
scripts/pg-ha.sh start

proxy() { # LISTEN UPSTREAM CONTROL
  "$bin/faultproxy" --listen "127.0.0.1:$1" --upstream "127.0.0.1:$2" --control "127.0.0.1:$3" \
    >"target/soak/faultproxy-$1.log" 2>&1 &
  proxies+=($!)
}
for n in 1 2 3; do proxy $((15690 + n)) $((5690 + n)) $((15990 + n)); done
proxy 15451 "$(scripts/pg-ha.sh primary-port)" 15994
for port in 15691 15692 15693 15451; do
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done

urls=""
for n in 1 2 3; do urls+="${urls:+,}amqp://guest:guest@127.0.0.1:$((15690 + n))/%2f"; done
export RACCORDO__AMQP__URLS=$urls
export RACCORDO__DATABASE__URL=postgres://postgres@127.0.0.1:15451/raccordo
unset RACCORDO_CONFIG

# The faults, at fractions of the run (an hour: every 5 to 10 minutes).
at() { awk -v s="$seconds" -v f="$1" 'BEGIN { printf "%d", s * f }'; }
control() { echo "curl -fsS -X POST http://127.0.0.1:$1/$2"; }
brokers() { echo "$(control 15991 "$1") && $(control 15992 "$1") && $(control 15993 "$1")"; }
faults=target/soak/faults.txt
cat >"$faults" <<EOF
# seconds  command — written by scripts/soak.sh for a run of $seconds s
$(at 0.08) scripts/rabbit-cluster.sh kill 2
$(at 0.16) scripts/rabbit-cluster.sh start-node 2
$(at 0.25) hub-kill 1
$(at 0.33) $(control 15994 blackhole)
$(at 0.36) $(control 15994 restore)
$(at 0.45) scripts/pg-ha.sh kill-primary && scripts/pg-ha.sh promote && curl -fsS -X POST --data "127.0.0.1:\$(scripts/pg-ha.sh primary-port)" http://127.0.0.1:15994/retarget
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
