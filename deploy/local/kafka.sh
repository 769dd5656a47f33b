#!/usr/bin/env bash
# Apache Kafka, single node, KRaft (broker + controller in one JVM), from Maven Central jars.
#
#   deploy/local/kafka.sh start|stop|status|install
#
# Environment: ZAITS_STATE_DIR (default .state), ZAITS_KAFKA_PORT (9092),
# ZAITS_KAFKA_CONTROLLER_PORT (9093), ZAITS_KAFKA_HEAP (1g),
# ZAITS_KAFKA_START_TIMEOUT (seconds, 90), ZAITS_KAFKA_LIBS (jar folder, default
# $ZAITS_STATE_DIR/kafka/libs; tests point a private broker at the shared jars).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Kafka 4.4.0: the newest 4.x on Maven Central that runs here with kafka-go v0.4.51
# (kafka-go needs v0.4.48+ for Kafka 4.x, which dropped the old protocol versions).
KAFKA_VERSION="${ZAITS_KAFKA_VERSION:-4.4.0}"
PORT="${ZAITS_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${ZAITS_KAFKA_CONTROLLER_PORT:-9093}"
HEAP="${ZAITS_KAFKA_HEAP:-1g}"
TIMEOUT="${ZAITS_KAFKA_START_TIMEOUT:-90}"

DIR="$STATE_DIR/kafka"
LIBS="${ZAITS_KAFKA_LIBS:-$DIR/libs}"
DATA="$DIR/data"
PIDFILE="$DIR/kafka.pid"
LOGFILE="$DIR/logs/server.log"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

install() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn  >/dev/null || apt_install maven
  command -v kcat >/dev/null || apt_install kcat
  if [ -f "$LIBS/.version" ] && [ "$(cat "$LIBS/.version")" = "$KAFKA_VERSION" ]; then return 0; fi
  # Old and new jars side by side fail with NoSuchMethodError: start from an empty folder.
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  mvn -q -B -f "$HERE/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$LIBS" \
    || die "mvn could not fetch Kafka $KAFKA_VERSION"
  echo "$KAFKA_VERSION" > "$LIBS/.version"
}

write_config() {
  mkdir -p "$DIR/logs" "$DATA"
  cat > "$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.retention.hours=168
log.segment.bytes=268435456
log.cleaner.enable=true
message.max.bytes=8388608
num.network.threads=2
num.io.threads=4
PROPS
}

classpath() { echo "$LIBS/*"; }

format_once() {
  [ -f "$DATA/meta.properties" ] && return 0
  log "formatting KRaft storage in $DATA"
  local id
  id=$(java -cp "$(classpath)" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
  java -cp "$(classpath)" -Dlog4j2.configurationFile="$HERE/log4j2.yaml" \
    kafka.tools.StorageTool format --standalone -t "$id" -c "$DIR/server.properties" \
    > "$DIR/logs/format.log" 2>&1 || { tail -n 30 "$DIR/logs/format.log" >&2; die "storage format failed"; }
}

ready() { kcat -b "127.0.0.1:$PORT" -L -m 3 >/dev/null 2>&1; }

start() {
  if pid_alive "$PIDFILE"; then log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT: nothing to do"; return 0; fi
  if port_open 127.0.0.1 "$PORT"; then
    if ready; then log "a Kafka broker not started by this script already answers on 127.0.0.1:$PORT: using it"; return 0; fi
    die "port $PORT is taken by something that is not a Kafka broker"
  fi
  install
  write_config
  format_once
  log "starting Kafka $KAFKA_VERSION on 127.0.0.1:$PORT (heap $HEAP, data $DATA)"
  KAFKA_LOG_DIR="$DIR/logs" setsid nohup java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dkafka.logs.dir="$DIR/logs" \
    -Dlog4j2.configurationFile="$HERE/log4j2.yaml" \
    -cp "$(classpath)" kafka.Kafka "$DIR/server.properties" \
    > "$DIR/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  if ! wait_for "$TIMEOUT" ready; then
    log "Kafka did not answer a metadata request within ${TIMEOUT}s; last lines of its log:"
    tail -n 40 "$LOGFILE" "$DIR/logs/stdout.log" 2>/dev/null >&2 || true
    stop_pid kafka "$PIDFILE" >/dev/null
    exit 1
  fi
  log "ready: metadata request answered on 127.0.0.1:$PORT"
}

status() {
  if pid_alive "$PIDFILE"; then
    if ready; then log "running (pid $(cat "$PIDFILE")), answering on 127.0.0.1:$PORT"; else log "running (pid $(cat "$PIDFILE")) but not answering"; exit 1; fi
  else log "not running"; exit 1; fi
}

case "${1:-}" in
  install) install ;;
  start)   start ;;
  stop)    stop_pid kafka "$PIDFILE" ;;
  status)  status ;;
  *) echo "usage: $0 start|stop|status|install" >&2; exit 2 ;;
esac
