#!/usr/bin/env bash
# Runs Herald's test suite against a real Kafka broker.
#
#   scripts/test.sh [cargo test args...] [-- test binary args...]
#
# Starts (or reuses) the local broker with scripts/kafka.sh, unless
# KAFKA_BOOTSTRAP_SERVERS already names a cluster (then only checks that it
# answers), exports KAFKA_BOOTSTRAP_SERVERS, builds the workspace binaries,
# then runs `cargo test --workspace ... -- --test-threads=2 ...`.
# Exits with cargo's exit code. The local broker is left running for the
# next run (cheap to reuse) unless HERALD_STOP_KAFKA=1.
#
# Examples:
#   scripts/test.sh                       # everything
#   scripts/test.sh delivery_            # tests whose name contains delivery_
#   scripts/test.sh -p herald-router -- --nocapture
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

say() { printf '[test.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Split "$@" into cargo's arguments and the test binaries' arguments.
cargo_args=()
bin_args=()
seen_sep=0
for a in "$@"; do
  if [[ $seen_sep == 0 && $a == -- ]]; then
    seen_sep=1
  elif [[ $seen_sep == 0 ]]; then
    cargo_args+=("$a")
  else
    bin_args+=("$a")
  fi
done
scope=(--workspace)
for a in ${cargo_args[@]+"${cargo_args[@]}"}; do
  case $a in -p | --package | -p=* | --package=* | -p?*) scope=() ;; esac
done
threads=(--test-threads=2)
for a in ${bin_args[@]+"${bin_args[@]}"}; do
  case $a in --test-threads*) threads=() ;; esac
done

local_broker=0
if [[ -z ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
  local_broker=1
  say "starting local Kafka (scripts/kafka.sh start)"
else
  say "using existing Kafka cluster at $KAFKA_BOOTSTRAP_SERVERS"
fi
KAFKA_BOOTSTRAP_SERVERS=$("$REPO_ROOT/scripts/kafka.sh" start)
export KAFKA_BOOTSTRAP_SERVERS
say "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS"

# shellcheck disable=SC2317  # invoked by the EXIT trap
stop_kafka() {
  local rc=$?
  say "stopping local Kafka (HERALD_STOP_KAFKA=1)"
  "$REPO_ROOT/scripts/kafka.sh" stop || true
  exit "$rc"
}
if [[ $local_broker == 1 && ${HERALD_STOP_KAFKA:-0} == 1 ]]; then
  trap stop_kafka EXIT
fi

say "cargo build --workspace --bins"
rc=0
cargo build --workspace --bins || rc=$?
if [[ $rc != 0 ]]; then
  say "cargo build failed (exit $rc)"
  exit "$rc"
fi

test_cmd=(cargo test --no-fail-fast ${scope[@]+"${scope[@]}"} ${cargo_args[@]+"${cargo_args[@]}"}
  -- ${threads[@]+"${threads[@]}"} ${bin_args[@]+"${bin_args[@]}"})
say "${test_cmd[*]}"
"${test_cmd[@]}" || rc=$?
say "cargo test exit code $rc"
exit "$rc"
