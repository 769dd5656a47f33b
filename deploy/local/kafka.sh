#!/usr/bin/env bash
# Apache Kafka in KRaft mode from Maven Central jars: one node (broker +
# controller in one JVM), or with ZAITS_KAFKA_NODES=3 a cluster of three such
# nodes on loopback forming a 3-voter controller quorum.
#
#   deploy/local/kafka.sh start|stop|stop-all|status|install|brokers
#   deploy/local/kafka.sh start-node N|kill-node N|stop-node N|quorum-leader   (cluster only)
#
# Environment: ZAITS_STATE_DIR (default .state), ZAITS_KAFKA_NODES (1),
# ZAITS_KAFKA_HEAP (1g for one node, 512m per cluster node),
# ZAITS_KAFKA_START_TIMEOUT (seconds, 90), ZAITS_KAFKA_LIBS (jar folder, default
# $ZAITS_STATE_DIR/kafka/libs; tests point private brokers at the shared jars).
# One node: ZAITS_KAFKA_PORT (9092), ZAITS_KAFKA_CONTROLLER_PORT (9093), state in
# $ZAITS_STATE_DIR/kafka. A cluster: ZAITS_KAFKA_CLUSTER_PORTS (comma list, default
# 19092,19093,19094), ZAITS_KAFKA_CLUSTER_CONTROLLER_PORTS (19192,19193,19194), state
# in $ZAITS_STATE_DIR/kafka-cluster/node-N; topics get replication factor 3 and
# min.insync.replicas=2 (on 3 or more nodes).
#
# stop stops what ZAITS_KAFKA_NODES names; stop-all stops the single node and
# every cluster node this state folder started. kill-node sends SIGKILL (chaos).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Kafka 4.4.0: the newest 4.x on Maven Central that runs here with kafka-go v0.4.51
# (kafka-go needs v0.4.48+ for Kafka 4.x, which dropped the old protocol versions).
KAFKA_VERSION="${ZAITS_KAFKA_VERSION:-4.4.0}"
NODES="${ZAITS_KAFKA_NODES:-1}"
TIMEOUT="${ZAITS_KAFKA_START_TIMEOUT:-90}"
LIBS="${ZAITS_KAFKA_LIBS:-$STATE_DIR/kafka/libs}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLUSTER_DIR="$STATE_DIR/kafka-cluster"
[[ "$NODES" =~ ^[1-9]$ ]] || die "ZAITS_KAFKA_NODES must be 1..9, got $NODES"

if [ "$NODES" -eq 1 ]; then
  HEAP="${ZAITS_KAFKA_HEAP:-1g}"
  PORTS=("${ZAITS_KAFKA_PORT:-9092}")
  CPORTS=("${ZAITS_KAFKA_CONTROLLER_PORT:-9093}")
else
  HEAP="${ZAITS_KAFKA_HEAP:-512m}"
  def_ports=() def_cports=()
  for i in $(seq 0 $((NODES - 1))); do def_ports+=($((19092 + i))); def_cports+=($((19192 + i))); done
  IFS=, read -r -a PORTS <<< "${ZAITS_KAFKA_CLUSTER_PORTS:-$(IFS=,; echo "${def_ports[*]}")}"
  IFS=, read -r -a CPORTS <<< "${ZAITS_KAFKA_CLUSTER_CONTROLLER_PORTS:-$(IFS=,; echo "${def_cports[*]}")}"
  [ ${#PORTS[@]} -eq "$NODES" ] && [ ${#CPORTS[@]} -eq "$NODES" ] \
    || die "ZAITS_KAFKA_CLUSTER_PORTS and ZAITS_KAFKA_CLUSTER_CONTROLLER_PORTS must list $NODES ports each"
fi
# Replication: 3 copies (2 must acknowledge) once there are 3 nodes.
RF=$(( NODES >= 3 ? 3 : 1 ))
MIN_ISR=$(( NODES >= 3 ? 2 : 1 ))

# node_dir N: the state folder of node N (1-based).
node_dir() { if [ "$NODES" -eq 1 ]; then echo "$STATE_DIR/kafka"; else echo "$CLUSTER_DIR/node-$1"; fi; }
port_of()  { echo "${PORTS[$(($1 - 1))]}"; }
cport_of() { echo "${CPORTS[$(($1 - 1))]}"; }
brokers()  { local out=() i; for i in $(seq 1 "$NODES"); do out+=("127.0.0.1:$(port_of "$i")"); done; (IFS=,; echo "${out[*]}"); }
controllers() { local out=() i; for i in $(seq 1 "$NODES"); do out+=("127.0.0.1:$(cport_of "$i")"); done; (IFS=,; echo "${out[*]}"); }

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

# write_config N: server.properties of node N.
write_config() {
  local n=$1 dir; dir=$(node_dir "$n")
  mkdir -p "$dir/logs" "$dir/data"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.bootstrap.servers=$(controllers)
listeners=PLAINTEXT://127.0.0.1:$(port_of "$n"),CONTROLLER://127.0.0.1:$(cport_of "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(port_of "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$RF
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$RF
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$MIN_ISR
share.coordinator.state.topic.replication.factor=$RF
share.coordinator.state.topic.min.isr=$MIN_ISR
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
  if [ "$NODES" -gt 1 ]; then
    # A killed broker keeps every partition it led, and stays in every ISR
    # (acks=all writes wait for it), until the controller fences it when its
    # session times out (default 9 s after its last heartbeat; after a
    # controller failover the new controller starts that clock afresh, so
    # election + 9 s). 6 s with a heartbeat a second keeps ingestion and
    # delivery within 15 s of a kill of the active controller on a loaded
    # 2-core machine (measured: deploy/chaos/FINDINGS.md); six missed
    # heartbeats still fence no live broker.
    cat >> "$dir/server.properties" <<PROPS
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
PROPS
  fi
}

classpath() { echo "$LIBS/*"; }

# new_uuid: a Kafka UUID (16 random bytes, URL-safe base64 without padding,
# not starting with "-"), made without starting a JVM.
new_uuid() {
  local u
  while u=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='); [[ "$u" == -* ]]; do :; done
  echo "$u"
}

# format_once: format every node's storage that is not formatted yet. A
# cluster is formatted as a whole (one cluster id, the initial voters with
# their directory ids), so either all nodes are formatted or none is.
format_once() {
  local i dir formatted=0
  for i in $(seq 1 "$NODES"); do [ -f "$(node_dir "$i")/data/meta.properties" ] && formatted=$((formatted + 1)); done
  [ "$formatted" -eq "$NODES" ] && return 0
  [ "$formatted" -eq 0 ] || die "only $formatted of $NODES nodes under $CLUSTER_DIR are formatted; remove $CLUSTER_DIR to start over"
  local id quorum=(--standalone) pids=()
  id=$(new_uuid)
  if [ "$NODES" -gt 1 ]; then
    local voters=()
    for i in $(seq 1 "$NODES"); do voters+=("$i@127.0.0.1:$(cport_of "$i"):$(new_uuid)"); done
    quorum=(--initial-controllers "$(IFS=,; echo "${voters[*]}")")
  fi
  for i in $(seq 1 "$NODES"); do
    dir=$(node_dir "$i")
    log "formatting KRaft storage in $dir/data"
    java -cp "$(classpath)" -Dlog4j2.configurationFile="$HERE/log4j2.yaml" \
      kafka.tools.StorageTool format "${quorum[@]}" -t "$id" -c "$dir/server.properties" \
      > "$dir/logs/format.log" 2>&1 &
    pids+=($!)
  done
  for i in $(seq 1 "$NODES"); do
    wait "${pids[$((i - 1))]}" || { tail -n 30 "$(node_dir "$i")/logs/format.log" >&2; die "storage format of node $i failed"; }
  done
}

# ready_node N: node N answers a metadata request.
ready_node() { kcat -b "127.0.0.1:$(port_of "$1")" -L -m 3 >/dev/null 2>&1; }

# ready: every node answers, and (cluster) each one's metadata lists all
# nodes as live brokers, so each has registered with the quorum and is unfenced.
ready() {
  local i
  for i in $(seq 1 "$NODES"); do
    ready_node "$i" || return 1
    if [ "$NODES" -gt 1 ]; then
      kcat -b "127.0.0.1:$(port_of "$i")" -L -m 3 2>/dev/null | grep -q "^ $NODES brokers:" || return 1
    fi
  done
}

# launch N: start node N's JVM in the background (detached from the caller's
# process group, so a Ctrl-C meant for the caller does not reach it).
launch() {
  local n=$1 dir; dir=$(node_dir "$n")
  log "starting Kafka $KAFKA_VERSION node $n on 127.0.0.1:$(port_of "$n") (controller $(cport_of "$n"), heap $HEAP, data $dir/data)"
  KAFKA_LOG_DIR="$dir/logs" setsid nohup java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dkafka.logs.dir="$dir/logs" \
    -Dlog4j2.configurationFile="$HERE/log4j2.yaml" \
    -cp "$(classpath)" kafka.Kafka "$dir/server.properties" \
    > "$dir/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/kafka.pid"
}

fail_start() {
  local i dir
  log "$1; last lines of the logs:"
  for i in $(seq 1 "$NODES"); do
    dir=$(node_dir "$i"); tail -n 20 "$dir/logs/server.log" "$dir/logs/stdout.log" 2>/dev/null >&2 || true
  done
  for i in $(seq 1 "$NODES"); do stop_pid "kafka node $i" "$(node_dir "$i")/kafka.pid" >/dev/null; done
  exit 1
}

describe() {
  if [ "$NODES" -eq 1 ]; then echo "127.0.0.1:$(port_of 1)"; else
    echo "$NODES brokers $(brokers) (controller quorum $(controllers); replication factor $RF, min.insync.replicas $MIN_ISR)"
  fi
}

start() {
  local i running=0
  for i in $(seq 1 "$NODES"); do pid_alive "$(node_dir "$i")/kafka.pid" && running=$((running + 1)); done
  if [ "$running" -eq "$NODES" ]; then log "already running on $(describe): nothing to do"; return 0; fi
  if [ "$running" -eq 0 ]; then
    for i in $(seq 1 "$NODES"); do
      port_open 127.0.0.1 "$(port_of "$i")" || continue
      if [ "$NODES" -eq 1 ] && ready_node 1; then
        log "a Kafka broker not started by this script already answers on 127.0.0.1:$(port_of 1): using it"; return 0
      fi
      die "port $(port_of "$i") is taken by another process (set ZAITS_KAFKA_CLUSTER_PORTS / ZAITS_KAFKA_PORT)"
    done
  fi
  install
  for i in $(seq 1 "$NODES"); do write_config "$i"; done
  format_once
  for i in $(seq 1 "$NODES"); do pid_alive "$(node_dir "$i")/kafka.pid" || launch "$i"; done
  wait_for "$TIMEOUT" ready || fail_start "Kafka did not answer on $(describe) within ${TIMEOUT}s"
  log "ready: $(describe) answer metadata requests"
}

# start_node N: (re)start one cluster node, e.g. after kill-node; waits until it answers.
start_node() {
  local n=$1 dir; dir=$(node_dir "$n")
  if pid_alive "$dir/kafka.pid"; then log "node $n already running (pid $(cat "$dir/kafka.pid"))"; return 0; fi
  [ -f "$dir/data/meta.properties" ] || die "node $n is not formatted: run start first"
  launch "$n"
  wait_for "$TIMEOUT" ready_node "$n" || die "node $n did not answer within ${TIMEOUT}s"
  log "node $n ready on 127.0.0.1:$(port_of "$n")"
}

# kill_node N: SIGKILL node N (no clean shutdown: what a crash does).
kill_node() {
  local n=$1 file; file="$(node_dir "$n")/kafka.pid"
  pid_alive "$file" || die "node $n is not running"
  log "kill -9 node $n (pid $(cat "$file"))"
  kill -9 "$(cat "$file")"
  rm -f "$file"
}

stop() {
  local i pids=()
  for i in $(seq 1 "$NODES"); do stop_pid "kafka node $i" "$(node_dir "$i")/kafka.pid" & pids+=($!); done
  wait "${pids[@]}"
}

# quorum_leader: the node id that leads the controller quorum now: the live
# node whose log last reported becoming leader, at the highest epoch.
quorum_leader() {
  local i best="" best_epoch=-1 line epoch
  for i in $(seq 1 "$NODES"); do
    pid_alive "$(node_dir "$i")/kafka.pid" || continue
    line=$(grep -h "Completed transition to \(Leader\|Follower\|Unattached\|Candidate\|Prospective\|Resigned\)" "$(node_dir "$i")"/logs/server.log* 2>/dev/null | sort | tail -n1) || true
    [[ "$line" == *"transition to Leader"* ]] || continue
    epoch=$(grep -o "epoch=[0-9]*" <<< "$line" | head -n1 | cut -d= -f2)
    [ "${epoch:-0}" -gt "$best_epoch" ] && { best=$i; best_epoch=$epoch; }
  done
  [ -n "$best" ] || die "no live node reports leading the quorum"
  echo "$best"
}

status() {
  local i rc=0 dir
  for i in $(seq 1 "$NODES"); do
    dir=$(node_dir "$i")
    if pid_alive "$dir/kafka.pid"; then
      if ready_node "$i"; then log "node $i running (pid $(cat "$dir/kafka.pid")), answering on 127.0.0.1:$(port_of "$i")"
      else log "node $i running (pid $(cat "$dir/kafka.pid")) but not answering"; rc=1; fi
    else log "node $i not running"; rc=1; fi
  done
  return $rc
}

cluster_only() { [ "$NODES" -gt 1 ] || die "$1 needs a cluster (ZAITS_KAFKA_NODES=3)"; }
node_arg() { [[ "${1:-}" =~ ^[1-9]$ ]] && [ "$1" -le "$NODES" ] || die "node must be 1..$NODES"; }

case "${1:-}" in
  install)  install ;;
  start)    start ;;
  stop)     stop ;;
  stop-all)
    ZAITS_KAFKA_NODES=1 "$0" stop
    for d in "$CLUSTER_DIR"/node-*; do
      [ -f "$d/kafka.pid" ] && stop_pid "kafka $(basename "$d")" "$d/kafka.pid"
    done
    true ;;
  status)   status ;;
  brokers)  brokers ;;
  start-node) cluster_only "$1"; node_arg "${2:-}"; start_node "$2" ;;
  kill-node)  cluster_only "$1"; node_arg "${2:-}"; kill_node "$2" ;;
  stop-node)  cluster_only "$1"; node_arg "${2:-}"; stop_pid "kafka node $2" "$(node_dir "$2")/kafka.pid" ;;
  quorum-leader) cluster_only "$1"; quorum_leader ;;
  *) echo "usage: $0 start|stop|stop-all|status|install|brokers|start-node N|kill-node N|stop-node N|quorum-leader" >&2; exit 2 ;;
esac
