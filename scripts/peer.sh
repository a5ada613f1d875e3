#!/usr/bin/env bash
# The Java peer Herald is benchmarked against (crates/herald-bench/peer): a
# Spring Boot / Spring Kafka webhook forwarder with retry topics and a DLT.
#
#   scripts/peer.sh build   build the runnable jar with Maven unless it is up
#                           to date; prints its absolute path as the last line
#                           of stdout (Maven's output goes to stderr)
#
# The jar is rebuilt when it is missing or when pom.xml or anything under src/
# changed since it was built (a hash of their paths and contents is kept next
# to the jar), so an added, edited or deleted source file all count. Build
# output stays in crates/herald-bench/peer/target/. Needs Java 17+ and Maven;
# dependencies come from Maven Central into ~/.m2.
#
# Run it as: java -Xmx1g -jar <jar> --spring.kafka.bootstrap-servers=HOST:PORT \
#   --peer.topic=T --peer.group=G --peer.url=URL [--peer.secret=whsec_...] \
#   [--peer.concurrency=N --peer.timeout-ms=5000 --peer.attempts=3 --peer.backoff-ms=1000,5000]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
PEER_DIR=$REPO_ROOT/crates/herald-bench/peer
JAR=$PEER_DIR/target/herald-peer.jar
STAMP=$PEER_DIR/target/herald-peer.sources.sha256

log() { printf 'peer.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_tools() {
  local java
  if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    java=$JAVA_HOME/bin/java
  else
    java=$(command -v java || true)
  fi
  [[ -n $java ]] || die "java not found: the peer needs Java 17+ (e.g. apt-get install openjdk-17-jdk-headless)"
  local v
  v=$("$java" -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p' || true)
  if [[ -n $v && $v -lt 17 ]]; then
    die "Java $v found at $java; the peer (Spring Boot 4) needs Java 17+"
  fi
  command -v mvn >/dev/null || die "mvn not found: Maven is needed to build the peer (e.g. apt-get install maven)"
  [[ -x ${java%/java}/javac ]] || command -v javac >/dev/null ||
    die "javac not found: the peer is compiled, so it needs a JDK, not only a JRE (e.g. apt-get install openjdk-17-jdk-headless)"
}

sources_hash() {
  (cd "$PEER_DIR" && find pom.xml src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

build() {
  check_tools
  [[ -f $PEER_DIR/pom.xml ]] || die "$PEER_DIR/pom.xml not found"
  # One build at a time; the lock is on the project directory because
  # `mvn clean` removes target/.
  exec 9<"$PEER_DIR"
  flock -w 900 9 || die "could not lock $PEER_DIR"
  local hash
  hash=$(sources_hash)
  if [[ -f $JAR && -f $STAMP && $(<"$STAMP") == "$hash" ]]; then
    log "up to date: $JAR"
  else
    log "building $JAR with Maven ..."
    local t0=$SECONDS
    # clean: a deleted source must not leave its class behind in the jar.
    mvn -B -q -Dstyle.color=never -f "$PEER_DIR/pom.xml" clean package >&2 \
      || die "mvn package failed (see the output above)"
    [[ -f $JAR ]] || die "mvn succeeded but $JAR is missing"
    printf '%s\n' "$hash" >"$STAMP"
    log "built in $((SECONDS - t0)) s"
  fi
  printf '%s\n' "$JAR"
}

case ${1:-} in
  build) build ;;
  *)
    sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
