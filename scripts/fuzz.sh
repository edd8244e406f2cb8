#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 30), one at a time on one
# core, from the committed corpus (fuzz/corpus/<target>, read only: new inputs go to
# fuzz/target/corpus/<target>). Fails if any target finds a crash (saved under
# fuzz/artifacts/<target>/). Prints one line per target: executions and time.
#
# cargo-fuzz needs nightly flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP=1.
# Targets are built without a sanitizer: every crate of the hub forbids `unsafe`, and what the
# targets look for — panics, overflows (checks on), broken invariants — needs none.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# `--runs N`: N executions per target from a fixed seed instead of a time, so the run is the
# same every time (what .ci/run does: a red CI must be reproducible).
LIMIT=()
if [[ ${1:-} == --runs ]]; then
  [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS | --runs N]" >&2; exit 2; }
  LIMIT=(-runs="$2" -seed=1)
  SECONDS_EACH=0
else
  SECONDS_EACH=${1:-30}
  [[ $SECONDS_EACH =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS | --runs N]" >&2; exit 2; }
  LIMIT=(-max_total_time="$SECONDS_EACH")
fi
export RUSTC_BOOTSTRAP=1
FUZZ_ARGS=(--sanitizer none)

log() { printf '[fuzz] %s\n' "$*" >&2; }

if ! command -v cargo-fuzz >/dev/null; then
  log 'cargo install cargo-fuzz --locked'
  cargo install cargo-fuzz --locked
fi

log "cargo fuzz build ${FUZZ_ARGS[*]}"
cargo fuzz build "${FUZZ_ARGS[@]}"

mapfile -t targets < <(cargo fuzz list)
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/target/corpus/$t" "fuzz/corpus/$t"
  out=$(mktemp)
  start=$(date +%s)
  # One process, one thread (the default; -jobs/-workers would fork and log to files).
  if cargo fuzz run "${FUZZ_ARGS[@]}" "$t" "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
    "${LIMIT[@]}" -timeout=30 -print_final_stats=1 >"$out" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$t")
    tail -n 40 "$out" >&2
  fi
  elapsed=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -n 1)
  summary+=("$(printf '%-20s %-5s %10s executions in %4s s (%s/s)' "$t" "$status" "${execs:-?}" "$elapsed" "${rate:-?}")")
  log "${summary[-1]}"
  rm -f "$out"
done

printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  log "crashes in: ${failed[*]} (inputs under fuzz/artifacts/; replay with cargo fuzz run ${FUZZ_ARGS[*]} <target> <file>)"
  exit 1
fi
