#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) broker for development and tests.
#
#   scripts/kafka.sh start       start (or reuse) the broker; prints the bootstrap address
#   scripts/kafka.sh stop        stop it (SIGTERM, then SIGKILL after HERALD_KAFKA_STOP_TIMEOUT s)
#   scripts/kafka.sh status      exit 0 if the broker is running (and says so)
#   scripts/kafka.sh bootstrap   print the bootstrap address
#   scripts/kafka.sh wait        wait until the broker answers a metadata request; print the address
#   scripts/kafka.sh tool <MainClass> [args...]
#                                run a Kafka tool class with the broker's classpath, e.g.
#                                scripts/kafka.sh tool org.apache.kafka.tools.TopicCommand \
#                                  --bootstrap-server "$(scripts/kafka.sh bootstrap)" --list
#   scripts/kafka.sh fetch       only download the jars
#   scripts/kafka.sh secure      print the SASL_SSL listener's client settings (see below)
#
# The jars come from Maven Central through Maven (scripts/kafka-pom.xml) and
# are cached in HERALD_KAFKA_HOME (default ~/.cache/herald/kafka-<version>).
# Only stdout of `start`, `wait` and `bootstrap` is the address; progress goes to stderr.
#
# Environment:
#   HERALD_KAFKA_DIR        data dir (default <repo>/.herald/kafka): broker.log,
#                           broker.pid, ports, bootstrap, server.properties, data/
#   HERALD_KAFKA_VERSION    Kafka version (default below); HERALD_KAFKA_HOME jar cache
#   KAFKA_PORT, KAFKA_CONTROLLER_PORT
#                           fixed ports; otherwise free ports are picked once and
#                           remembered in $HERALD_KAFKA_DIR/ports
#   KAFKA_BOOTSTRAP_SERVERS use that cluster instead: start/wait only check that it
#                           answers and print it; stop/status do not touch it
#   HERALD_KAFKA_START_TIMEOUT (90), HERALD_KAFKA_STOP_TIMEOUT (30) seconds
#   HERALD_KAFKA_HEAP ("-Xms256m -Xmx1g"), HERALD_KAFKA_OPTS (extra broker JVM options),
#   HERALD_KAFKA_TOOL_OPTS ("-Xmx512m", JVM options for `tool`)
#   HERALD_KAFKA_PROPS      extra server.properties lines (newline-separated)
#   HERALD_KAFKA_PROBE=jvm  check readiness with the Admin client (ClusterTool)
#                           instead of the built-in python Metadata probe
#   HERALD_KAFKA_SASL_SSL=1 (on the data dir's first start; remembered) also
#                           listen with SASL_SSL: a CA and a broker certificate
#                           made with keytool in $HERALD_KAFKA_DIR/tls, a
#                           SCRAM-SHA-512 user `herald` created by the broker's
#                           StorageTool; `scripts/kafka.sh secure` prints the
#                           client settings as shell variables
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

KAFKA_VERSION=${HERALD_KAFKA_VERSION:-4.3.1}
# log4j version the chosen Kafka release depends on (binding must match core).
LOG4J_VERSION=${HERALD_LOG4J_VERSION:-2.25.4}
KAFKA_HOME_DIR=${HERALD_KAFKA_HOME:-${HOME:-/root}/.cache/herald/kafka-$KAFKA_VERSION}
LIBS=$KAFKA_HOME_DIR/libs
POM=$SCRIPT_DIR/kafka-pom.xml
START_TIMEOUT=${HERALD_KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${HERALD_KAFKA_STOP_TIMEOUT:-30}
HOST=127.0.0.1

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- data dir ---
data_dir() {
  local d=${HERALD_KAFKA_DIR:-$REPO_ROOT/.herald/kafka}
  mkdir -p "$d"
  (cd "$d" && pwd)
}

init_paths() {
  DATA_DIR=$(data_dir)
  PID_FILE=$DATA_DIR/broker.pid
  LOG_FILE=$DATA_DIR/broker.log
  PORTS_FILE=$DATA_DIR/ports
  BOOTSTRAP_FILE=$DATA_DIR/bootstrap
  CLUSTER_ID_FILE=$DATA_DIR/cluster.id
  PROPS=$DATA_DIR/server.properties
  LOG4J_CONF=$DATA_DIR/log4j2.properties
  LOG_DIRS=$DATA_DIR/data
  LOCK_FILE=$DATA_DIR/.lock
  TLS_DIR=$DATA_DIR/tls
  SECURE_MARK=$DATA_DIR/sasl_ssl
  if [[ ${HERALD_KAFKA_SASL_SSL:-0} == 1 && ! -f $LOG_DIRS/meta.properties ]]; then
    touch "$SECURE_MARK"
  fi
  SECURE=0
  if [[ -f $SECURE_MARK ]]; then SECURE=1; fi
}

lock_data_dir() {
  exec 9>"$LOCK_FILE"
  flock -w 300 9 || die "could not lock $LOCK_FILE (another kafka.sh running?)"
}

# ------------------------------------------------------------------- java ---
find_java() {
  if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    JAVA=$JAVA_HOME/bin/java
  else
    JAVA=$(command -v java || true)
  fi
  [[ -n $JAVA ]] || die "java not found (Java 17+ is needed)"
  local v
  v=$("$JAVA" -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p' || true)
  if [[ -n $v && $v -lt 17 ]]; then
    die "Java $v found at $JAVA; Kafka $KAFKA_VERSION needs Java 17+"
  fi
}

# ------------------------------------------------------------------- jars ---
ensure_libs() {
  if [[ -f $LIBS/.complete ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (Maven is needed to fetch the Kafka jars)"
  mkdir -p "$KAFKA_HOME_DIR"
  (
    exec 8>"$KAFKA_HOME_DIR/.lock"
    flock -w 600 8 || die "could not lock $KAFKA_HOME_DIR/.lock"
    [[ -f $LIBS/.complete ]] && exit 0
    local tmp=$KAFKA_HOME_DIR/libs.tmp.$$ t0=$SECONDS
    rm -rf "$tmp"
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS ..."
    if ! mvn -B -q -Dstyle.color=never -f "$POM" \
        -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >&2; then
      rm -rf "$tmp"
      die "mvn could not fetch org.apache.kafka:kafka_2.13/kafka-tools:$KAFKA_VERSION"
    fi
    ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar "$tmp"/kafka-tools-"$KAFKA_VERSION".jar >/dev/null \
      || die "download incomplete: kafka jars missing in $tmp"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    echo "$KAFKA_VERSION" >"$LIBS/.complete"
    log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
  )
}

write_tools_log4j() {
  TOOLS_LOG4J=$KAFKA_HOME_DIR/tools-log4j2.properties
  [[ -f $TOOLS_LOG4J ]] && return 0
  cat >"$TOOLS_LOG4J.tmp.$$" <<'EOF'
# log4j2 config for `kafka.sh tool ...`: warnings and errors to stderr.
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
  mv "$TOOLS_LOG4J.tmp.$$" "$TOOLS_LOG4J"
}

# ------------------------------------------------------------------ ports ---
# A free TCP port on 127.0.0.1, preferably below the ephemeral range so that
# outgoing connections do not grab it between restarts.
pick_port() {
  python3 - "$@" <<'EOF'
import random, socket, sys
avoid = {int(a) for a in sys.argv[1:] if a}
def free(p):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Like the JVM's server sockets: TIME_WAIT leftovers do not count as taken.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(200):
    p = random.randint(20000, 32000)
    if p not in avoid and free(p):
        print(p)
        sys.exit(0)
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}

port_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

read_ports() {
  BROKER_PORT="" CONTROLLER_PORT="" SECURE_PORT=""
  if [[ -f $PORTS_FILE ]]; then
    BROKER_PORT=$(sed -n 's/^broker_port=//p' "$PORTS_FILE")
    CONTROLLER_PORT=$(sed -n 's/^controller_port=//p' "$PORTS_FILE")
    SECURE_PORT=$(sed -n 's/^secure_port=//p' "$PORTS_FILE")
  fi
}

# Decide the ports for a (re)start: env > remembered > new free port.
choose_ports() {
  read_ports
  local old_b=$BROKER_PORT old_c=$CONTROLLER_PORT
  if [[ -n ${KAFKA_PORT:-} ]]; then
    BROKER_PORT=$KAFKA_PORT
  elif [[ -n $BROKER_PORT ]] && ! port_free "$BROKER_PORT"; then
    log "remembered broker port $BROKER_PORT is taken; picking another"
    BROKER_PORT=""
  fi
  if [[ -n ${KAFKA_CONTROLLER_PORT:-} ]]; then
    CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT
  elif [[ -n $CONTROLLER_PORT ]] && ! port_free "$CONTROLLER_PORT"; then
    log "remembered controller port $CONTROLLER_PORT is taken; picking another"
    CONTROLLER_PORT=""
  fi
  [[ -n $BROKER_PORT ]] || BROKER_PORT=$(pick_port "$CONTROLLER_PORT")
  [[ -n $CONTROLLER_PORT ]] || CONTROLLER_PORT=$(pick_port "$BROKER_PORT")
  [[ $BROKER_PORT != "$CONTROLLER_PORT" ]] || die "broker and controller port are both $BROKER_PORT"
  port_free "$BROKER_PORT" || die "port $HOST:$BROKER_PORT is already in use"
  port_free "$CONTROLLER_PORT" || die "port $HOST:$CONTROLLER_PORT is already in use"
  local old_s=$SECURE_PORT
  if [[ $SECURE == 1 ]]; then
    if [[ -n $SECURE_PORT ]] && ! port_free "$SECURE_PORT"; then
      log "remembered SASL_SSL port $SECURE_PORT is taken; picking another"
      SECURE_PORT=""
    fi
    [[ -n $SECURE_PORT ]] || SECURE_PORT=$(pick_port "$BROKER_PORT")
    [[ $SECURE_PORT != "$CONTROLLER_PORT" ]] || SECURE_PORT=$(pick_port "$CONTROLLER_PORT")
  fi
  if [[ $BROKER_PORT != "$old_b" || $CONTROLLER_PORT != "$old_c" || $SECURE_PORT != "$old_s" ]]; then
    printf 'broker_port=%s\ncontroller_port=%s\nsecure_port=%s\n' "$BROKER_PORT" "$CONTROLLER_PORT" "$SECURE_PORT" >"$PORTS_FILE"
  fi
  echo "$HOST:$BROKER_PORT" >"$BOOTSTRAP_FILE"
}

local_bootstrap() {
  read_ports
  [[ -n $BROKER_PORT ]] || return 1
  echo "$HOST:$BROKER_PORT"
}

# ------------------------------------------------------------------ probe ---
# Sends ApiVersions and a Metadata request to each address of a bootstrap list
# and succeeds when one answers with at least one live broker.
# Exit 0 ok, 1 no answer, 3 broker answered but needs a Metadata version this
# probe does not speak (caller falls back to a JVM tool).
probe() {
  python3 - "$1" "${2:-3}" <<'EOF'
import socket, struct, sys

servers, timeout = sys.argv[1], float(sys.argv[2])
CLIENT = b"herald-kafka-sh"

def request(sock, key, version, corr, body):
    hdr = struct.pack(">hhih", key, version, corr, len(CLIENT)) + CLIENT
    msg = hdr + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", recv(sock, 4))[0]
    data = recv(sock, size)
    if struct.unpack(">i", data[:4])[0] != corr:
        raise RuntimeError("correlation id mismatch")
    return data[4:]

def recv(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    return buf

def check(host, port):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        r = request(s, 18, 0, 1, b"")            # ApiVersions v0
        err, n = struct.unpack(">hi", r[:6])
        if err != 0:
            raise RuntimeError("ApiVersions error %d" % err)
        meta = None
        for i in range(n):
            k, lo, hi = struct.unpack(">hhh", r[6 + 6 * i: 12 + 6 * i])
            if k == 3:
                meta = (lo, hi)
        if meta is None or meta[0] > 8 or meta[1] < 4:
            return 3, "Metadata versions %s" % (meta,)
        v = max(4, meta[0])
        body = struct.pack(">i?", -1, False)     # all topics, no auto-create
        if v == 8:
            body += struct.pack(">??", False, False)
        r = request(s, 3, v, 2, body)            # Metadata v4..v8
        nbrokers = struct.unpack(">i", r[4:8])[0]
        if nbrokers < 1:
            raise RuntimeError("no live broker in metadata yet")
        return 0, "%d broker(s)" % nbrokers

last = "no address"
for addr in servers.split(","):
    addr = addr.strip()
    if not addr:
        continue
    addr = addr.split("://")[-1]
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        rc, msg = check(host, int(port))
        print("%s: %s" % (addr, msg), file=sys.stderr)
        sys.exit(rc)
    except Exception as e:  # noqa: BLE001
        last = "%s: %s" % (addr, e)
print(last, file=sys.stderr)
sys.exit(1)
EOF
}

# JVM fallback: asks the cluster for its id through the Admin client.
jvm_probe() {
  ensure_libs
  write_tools_log4j
  find_java
  timeout 60 "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$LIBS/*" \
    org.apache.kafka.tools.ClusterTool cluster-id --bootstrap-server "$1" >/dev/null 2>&1
}

answers() {
  local rc=0
  if [[ ${HERALD_KAFKA_PROBE:-} == jvm ]]; then
    jvm_probe "$1"
    return
  fi
  probe "$1" "${2:-3}" 2>/dev/null || rc=$?
  if [[ $rc == 3 ]]; then
    jvm_probe "$1" && rc=0 || rc=1
  fi
  return "$rc"
}

# wait_for <bootstrap> <timeout-s> [pid]: until it answers; fails early if pid dies.
wait_for() {
  local addr=$1 limit=$2 pid=${3:-} t0=$SECONDS
  while true; do
    if answers "$addr" 2; then
      return 0
    fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      log "broker process $pid exited"
      return 1
    fi
    if ((SECONDS - t0 >= limit)); then
      log "no answer from $addr after ${limit}s"
      return 1
    fi
    sleep 0.5
  done
}

show_log_tail() {
  if [[ -f $LOG_FILE ]]; then
    log "last lines of $LOG_FILE:"
    tail -n 60 "$LOG_FILE" >&2 || true
  fi
}

# ---------------------------------------------------------------- process ---
broker_pid() {
  [[ -f $PID_FILE ]] || return 1
  local pid
  pid=$(cat "$PID_FILE" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: it must be our broker with our config.
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  [[ $cmdline == *"kafka.Kafka $PROPS"* ]] || return 1
  echo "$pid"
}

# A CA and a broker certificate for 127.0.0.1 (PKCS12, keytool), the CA as
# PEM for clients, and the SCRAM user's password; made once per data dir.
make_tls() {
  if [[ -f $TLS_DIR/broker.p12 && -f $TLS_DIR/ca.pem && -s $TLS_DIR/scram.password ]]; then
    return 0
  fi
  command -v keytool >/dev/null || die "keytool (Java) is needed for HERALD_KAFKA_SASL_SSL"
  log "making a test CA and broker certificate in $TLS_DIR (keytool)"
  rm -rf "$TLS_DIR" && mkdir -p "$TLS_DIR"
  local k=(keytool -storetype PKCS12 -storepass herald-test-store)
  (
    cd "$TLS_DIR"
    "${k[@]}" -genkeypair -alias ca -dname "CN=Herald test CA" -keyalg RSA -keysize 2048 \
      -validity 3650 -ext bc:c -keystore ca.p12
    "${k[@]}" -exportcert -rfc -alias ca -keystore ca.p12 -file ca.pem
    "${k[@]}" -genkeypair -alias broker -dname "CN=127.0.0.1" -keyalg RSA -keysize 2048 \
      -validity 3650 -keystore broker.p12
    "${k[@]}" -certreq -alias broker -keystore broker.p12 -file broker.csr
    "${k[@]}" -gencert -alias ca -keystore ca.p12 -infile broker.csr -outfile broker.crt -rfc \
      -validity 3650 -ext "SAN=IP:127.0.0.1,DNS:localhost" -ext "EKU=serverAuth"
    "${k[@]}" -importcert -noprompt -alias ca -file ca.pem -keystore broker.p12
    "${k[@]}" -importcert -noprompt -alias broker -file broker.crt -keystore broker.p12
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >scram.password
  ) >"$DATA_DIR/keytool.log" 2>&1 || { cat "$DATA_DIR/keytool.log" >&2; die "keytool failed"; }
}

# server.properties lines of the SASL_SSL listener.
secure_props() {
  if [[ $SECURE != 1 ]]; then return 0; fi
  printf '%s\n' \
    "sasl.enabled.mechanisms=SCRAM-SHA-512" \
    "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;" \
    "ssl.keystore.type=PKCS12" \
    "ssl.keystore.location=$TLS_DIR/broker.p12" \
    "ssl.keystore.password=herald-test-store" \
    "ssl.key.password=herald-test-store"
}

write_configs() {
  local extra_l="" extra_map=""
  if [[ $SECURE == 1 ]]; then
    make_tls
    extra_l=",SASL_SSL://$HOST:$SECURE_PORT"
    extra_map=",SASL_SSL:SASL_SSL"
  fi
  cat >"$PROPS" <<EOF
# Generated by scripts/kafka.sh on each start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$BROKER_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT$extra_l
advertised.listeners=PLAINTEXT://$HOST:$BROKER_PORT,CONTROLLER://$HOST:$CONTROLLER_PORT$extra_l
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT$extra_map
$(secure_props)
log.dirs=$LOG_DIRS
num.partitions=1
auto.create.topics.enable=false
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Abort timed-out transactions quickly (default 10 s); transaction.max.timeout.ms stays default.
transaction.abort.timed.out.transaction.cleanup.interval.ms=2000
# Enforce retention every 5 s (default 5 min), so tests can shorten a topic's
# retention.ms and see records deleted (outages longer than retention).
log.retention.check.interval.ms=5000
${HERALD_KAFKA_PROPS:-}
EOF
  cat >"$LOG4J_CONF" <<'EOF'
# Generated by scripts/kafka.sh: broker logs to stdout, which goes to broker.log.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

format_storage() {
  if [[ -f $LOG_DIRS/meta.properties ]]; then
    return 0
  fi
  local id
  if [[ -s $CLUSTER_ID_FILE ]]; then
    id=$(cat "$CLUSTER_ID_FILE")
  else
    id=$("$JAVA" -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null || true)
    id=${id##*$'\n'}
    [[ $id =~ ^[A-Za-z0-9_-]{22}$ ]] || die "StorageTool random-uuid printed '$id'"
    echo "$id" >"$CLUSTER_ID_FILE"
  fi
  log "formatting storage in $LOG_DIRS (cluster id $id)"
  local scram=()
  if [[ $SECURE == 1 ]]; then
    scram=(--add-scram "SCRAM-SHA-512=[name=herald,password=$(cat "$TLS_DIR/scram.password")]")
  fi
  "$JAVA" -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$LIBS/*" kafka.tools.StorageTool \
    format --standalone -t "$id" -c "$PROPS" ${scram[@]+"${scram[@]}"} >&2 \
    || die "StorageTool format failed"
}

cmd_start() {
  if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
    log "KAFKA_BOOTSTRAP_SERVERS is set; checking $KAFKA_BOOTSTRAP_SERVERS"
    wait_for "$KAFKA_BOOTSTRAP_SERVERS" "$START_TIMEOUT" \
      || die "cluster at $KAFKA_BOOTSTRAP_SERVERS does not answer"
    echo "$KAFKA_BOOTSTRAP_SERVERS"
    return 0
  fi
  init_paths
  lock_data_dir
  local pid addr
  if pid=$(broker_pid); then
    addr=$(local_bootstrap) || die "broker $pid running but $PORTS_FILE is missing"
    if [[ -n ${KAFKA_PORT:-} && $HOST:$KAFKA_PORT != "$addr" ]]; then
      log "warning: broker already running at $addr, not on KAFKA_PORT=$KAFKA_PORT (stop it first)"
    fi
    if ! answers "$addr" 2; then
      log "broker $pid is running but not answering yet; waiting"
      if ! wait_for "$addr" "$START_TIMEOUT" "$pid"; then
        show_log_tail
        die "broker $pid at $addr does not answer"
      fi
    else
      log "already running (pid $pid)"
    fi
    echo "$addr"
    return 0
  fi
  rm -f "$PID_FILE"

  local t0=$SECONDS
  find_java
  ensure_libs
  write_tools_log4j
  choose_ports
  write_configs
  format_storage
  addr=$HOST:$BROKER_PORT

  if [[ -f $LOG_FILE ]] && (($(stat -c %s "$LOG_FILE") > 50 * 1024 * 1024)); then
    mv -f "$LOG_FILE" "$LOG_FILE.1"
  fi
  printf '\n===== kafka.sh start %s: Kafka %s at %s =====\n' "$(date -u +%FT%TZ)" \
    "$KAFKA_VERSION" "$addr" >>"$LOG_FILE"

  local heap=${HERALD_KAFKA_HEAP:--Xms256m -Xmx1g}
  # Word splitting of the option strings is intended.
  # shellcheck disable=SC2206
  local -a jvm=($heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J_CONF"
    -Dkafka.logs.dir="$DATA_DIR" ${HERALD_KAFKA_OPTS:-})
  log "starting Kafka $KAFKA_VERSION broker at $addr (controller $HOST:$CONTROLLER_PORT, data $DATA_DIR)"
  # New session, stdio detached, lock fd closed: the broker outlives this script
  # and never holds the caller's pipes (so "$(kafka.sh start)" returns).
  # shellcheck disable=SC2016  # $$ and $@ expand in the child bash
  PIDF=$PID_FILE setsid nohup bash -c 'echo $$ >"$PIDF"; exec "$@"' kafka-broker \
    "$JAVA" "${jvm[@]}" -cp "$LIBS/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$LOG_FILE" 2>&1 9>&- &
  local launcher=$!
  local _
  for _ in $(seq 1 50); do
    [[ -s $PID_FILE ]] && break
    sleep 0.1
  done
  pid=$(cat "$PID_FILE" 2>/dev/null || echo "$launcher")

  if ! wait_for "$addr" "$START_TIMEOUT" "$pid"; then
    show_log_tail
    die "Kafka did not come up at $addr (pid $pid, timeout ${START_TIMEOUT}s; log $LOG_FILE)"
  fi
  log "Kafka is up at $addr (pid $pid, $((SECONDS - t0)) s)"
  echo "$addr"
}

cmd_stop() {
  # Acts on the local broker of HERALD_KAFKA_DIR only, never on KAFKA_BOOTSTRAP_SERVERS.
  init_paths
  lock_data_dir
  local pid
  if ! pid=$(broker_pid); then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local t0=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS - t0 >= STOP_TIMEOUT)); then
      log "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$PID_FILE"
  log "stopped ($((SECONDS - t0)) s)"
}

cmd_status() {
  if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
    if answers "$KAFKA_BOOTSTRAP_SERVERS" 3; then
      echo "external cluster at $KAFKA_BOOTSTRAP_SERVERS answers"
      return 0
    fi
    echo "external cluster at $KAFKA_BOOTSTRAP_SERVERS does not answer"
    return 1
  fi
  init_paths
  local pid addr
  if pid=$(broker_pid); then
    addr=$(local_bootstrap || echo "?")
    if answers "$addr" 2; then
      echo "running: pid $pid, bootstrap $addr, data $DATA_DIR"
    else
      echo "running but not answering (yet): pid $pid, bootstrap $addr, data $DATA_DIR"
    fi
    return 0
  fi
  echo "not running (data $DATA_DIR)"
  return 1
}

cmd_bootstrap() {
  if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
    echo "$KAFKA_BOOTSTRAP_SERVERS"
    return 0
  fi
  init_paths
  local_bootstrap || die "no broker port known yet (run: $0 start)"
}

cmd_wait() {
  local addr pid=""
  if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
    addr=$KAFKA_BOOTSTRAP_SERVERS
  else
    init_paths
    addr=$(local_bootstrap) || die "no broker port known yet (run: $0 start)"
    pid=$(broker_pid) || die "broker is not running (run: $0 start)"
  fi
  if ! wait_for "$addr" "$START_TIMEOUT" "$pid"; then
    [[ -n $pid ]] && show_log_tail
    die "no answer from $addr"
  fi
  echo "$addr"
}

cmd_secure() {
  init_paths
  [[ $SECURE == 1 ]] || die "this broker has no SASL_SSL listener (start a new data dir with HERALD_KAFKA_SASL_SSL=1)"
  read_ports
  [[ -n $SECURE_PORT ]] || die "no SASL_SSL port known yet (run: $0 start)"
  printf '%s\n' \
    "KAFKA_SASL_SSL_BOOTSTRAP=$HOST:$SECURE_PORT" \
    "KAFKA_SSL_CA_FILE=$TLS_DIR/ca.pem" \
    "KAFKA_SASL_MECHANISM=SCRAM-SHA-512" \
    "KAFKA_SASL_USERNAME=herald" \
    "KAFKA_SASL_PASSWORD_FILE=$TLS_DIR/scram.password"
}

cmd_tool() {
  [[ $# -ge 1 ]] || die "usage: $0 tool <MainClass> [args...]"
  find_java
  ensure_libs
  write_tools_log4j
  # shellcheck disable=SC2086
  exec "$JAVA" ${HERALD_KAFKA_TOOL_OPTS:--Xmx512m} -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$LIBS/*" "$@"
}

usage() {
  sed -n '2,40p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  bootstrap) cmd_bootstrap ;;
  wait) cmd_wait ;;
  tool) cmd_tool "$@" ;;
  secure) cmd_secure ;;
  fetch) find_java; ensure_libs; write_tools_log4j; log "jars in $LIBS" ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
