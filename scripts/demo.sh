#!/usr/bin/env bash
# Herald's demo: local Kafka, the router, three adapters and three demo
# destinations (healthy, Slack-like, HubSpot-on-a-bad-day), a stream of sample
# events, and live per-destination counts. Ctrl-C stops everything it started.
#
#   scripts/demo.sh
#
# Environment:
#   DEMO_RATE       events per second (default 50)
#   DEMO_DURATION   stop by itself after this long, e.g. 90s (default: run until Ctrl-C)
#   DEMO_SINK_PORT  port of the demo destinations (default 8900)
#   KAFKA_BOOTSTRAP_SERVERS  use an existing cluster instead of starting one
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
RATE=${DEMO_RATE:-50}
SINK_PORT=${DEMO_SINK_PORT:-8900}
LOGS="$REPO_ROOT/.herald/demo"
mkdir -p "$LOGS"

say() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }

for tool in cargo java mvn python3; do
  command -v "$tool" >/dev/null || { echo "demo needs $tool on PATH" >&2; exit 1; }
done

pids=()
started_kafka=0
cleanup() {
  trap - INT TERM EXIT
  say "stopping the demo's processes"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $started_kafka == 1 ]]; then
    say "stopping the Kafka broker the demo started"
    scripts/kafka.sh stop >/dev/null 2>&1 || true
  fi
  say "logs are in $LOGS"
}
trap cleanup INT TERM EXIT

if [[ -z ${KAFKA_BOOTSTRAP_SERVERS:-} ]] && ! scripts/kafka.sh status >/dev/null 2>&1; then
  started_kafka=1
fi
say "starting Kafka (first run downloads the broker jars from Maven Central)"
BOOTSTRAP=$(scripts/kafka.sh start)
say "Kafka at $BOOTSTRAP"

say "building Herald (first build takes a few minutes)"
cargo build --bins --quiet

BIN="$REPO_ROOT/target/debug"
export HERALD_CONFIG="$REPO_ROOT/examples/demo.toml"
export HERALD__KAFKA__BOOTSTRAP_SERVERS="$BOOTSTRAP"
export HERALD__DESTINATIONS__WAREHOUSE__URL="http://127.0.0.1:$SINK_PORT/healthy"
export HERALD__DESTINATIONS__SLACK__URL="http://127.0.0.1:$SINK_PORT/slack"
export HERALD__DESTINATIONS__HUBSPOT__URL="http://127.0.0.1:$SINK_PORT/hubspot"
# A demo signing secret; real deployments reference theirs with env:/file:.
export HERALD_DEMO_SECRET="whsec_ZGVtby1zZWNyZXQtZm9yLWhlcmFsZC1kZW1vIQ=="
export STRIPE_WEBHOOK_SECRET="whsec_demo_stripe_endpoint_secret"

"$BIN/herald" config check
"$BIN/herald" topics apply | tail -n 1

say "starting demo destinations on 127.0.0.1:$SINK_PORT"
HERALD_DEMO_SINK_SECRET=$HERALD_DEMO_SECRET "$BIN/herald-demo-sink" --listen "127.0.0.1:$SINK_PORT" >"$LOGS/sink.log" 2>&1 &
pids+=($!)

say "starting the router (metrics on 127.0.0.1:9464) and three adapters (9465-9467)"
"$BIN/herald-router" >"$LOGS/router.log" 2>&1 &
pids+=($!)
port=9465
for dest in warehouse slack hubspot; do
  "$BIN/herald-adapter" --destination "$dest" --listen "127.0.0.1:$port" >"$LOGS/adapter-$dest.log" 2>&1 &
  pids+=($!)
  port=$((port + 1))
done

# Wait until the router and adapters report ready.
say "starting the inbound gateway (Stripe webhooks on 127.0.0.1:8088, metrics on 9468)"
"$BIN/herald-gateway" >"$LOGS/gateway.log" 2>&1 &
pids+=($!)

say "starting the delivery log (herald-log: index in $LOGS/log.db, API on 127.0.0.1:9469)"
"$BIN/herald-log" >"$LOGS/log.log" 2>&1 &
pids+=($!)

for port in 9464 9465 9466 9467 9468 9469; do
  for _ in $(seq 1 120); do
    if curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { say "service on :$port did not become ready; see $LOGS"; exit 1; }
done

say "producing $RATE sample events/s (subscription.*, payment.*, user.*, invoice.*)"
"$BIN/herald" produce --rate "$RATE" --forever >"$LOGS/produce.log" 2>&1 &
pids+=($!)

INBOUND_RATE=${DEMO_INBOUND_RATE:-5}
say "playing Stripe: $INBOUND_RATE signed webhooks/s into the gateway, 10% delivered twice (routed once)"
"$BIN/herald-demo-provider" --url "http://127.0.0.1:8088/webhooks/stripe" --rate "$INBOUND_RATE" >"$LOGS/provider.log" 2>&1 &
pids+=($!)

say "live counts per destination (Ctrl-C to stop). Try meanwhile:"
say "  curl -s 127.0.0.1:9467/metrics | grep herald_adapter_attempts_total"
say "  curl -s 127.0.0.1:9468/metrics | grep herald_gateway_requests_total   # inbound"
say "  export HERALD_CONFIG=examples/demo.toml HERALD__KAFKA__BOOTSTRAP_SERVERS=$BOOTSTRAP"
say "  target/debug/herald dlq list -d hubspot"
say "  target/debug/herald trace <an event id from the list>   # every destination, every attempt"
say "  target/debug/herald reconcile --since 10m               # did every event reach an end?"
watch_args=(watch --from-now --interval 3s)
if [[ -n ${DEMO_DURATION:-} ]]; then
  watch_args+=(--duration "$DEMO_DURATION")
fi
"$BIN/herald" "${watch_args[@]}" || true
