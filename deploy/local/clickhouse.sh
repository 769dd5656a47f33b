#!/usr/bin/env bash
# ClickHouse from Debian's clickhouse-server package, run as a plain background
# process with its config, data and logs under the project's state folder.
#
#   deploy/local/clickhouse.sh start|stop|status|install
#
# Environment: ZAITS_STATE_DIR (default .state), ZAITS_CLICKHOUSE_PORT (native, 9000),
# ZAITS_CLICKHOUSE_HTTP_PORT (8123), ZAITS_CLICKHOUSE_START_TIMEOUT (seconds, 60).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT="${ZAITS_CLICKHOUSE_PORT:-9000}"
HTTP_PORT="${ZAITS_CLICKHOUSE_HTTP_PORT:-8123}"
TIMEOUT="${ZAITS_CLICKHOUSE_START_TIMEOUT:-60}"

DIR="$STATE_DIR/clickhouse"
PIDFILE="$DIR/clickhouse.pid"
LOGFILE="$DIR/logs/clickhouse-server.log"
ERRFILE="$DIR/logs/clickhouse-server.err.log"

server_bin() {
  local b
  for b in clickhouse-server /usr/sbin/clickhouse-server /usr/bin/clickhouse-server; do
    command -v "$b" >/dev/null 2>&1 && { command -v "$b"; return 0; }
  done
  return 1
}

install() {
  server_bin >/dev/null && command -v clickhouse-client >/dev/null && return 0
  apt_install clickhouse-server clickhouse-client
}

write_config() {
  mkdir -p "$DIR/data" "$DIR/tmp" "$DIR/user_files" "$DIR/format_schemas" "$DIR/logs"
  cat > "$DIR/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>$LOGFILE</log>
        <errorlog>$ERRFILE</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <http_port>$HTTP_PORT</http_port>
    <tcp_port>$PORT</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>1073741824</mark_cache_size>
    <path>$DIR/data/</path>
    <tmp_path>$DIR/tmp/</tmp_path>
    <user_files_path>$DIR/user_files/</user_files_path>
    <format_schema_path>$DIR/format_schemas/</format_schema_path>
    <users_config>$DIR/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
</yandex>
XML
  cat > "$DIR/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries><errors>0</errors><result_rows>0</result_rows>
                <read_rows>0</read_rows><execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
XML
}

ready() { clickhouse-client --host 127.0.0.1 --port "$PORT" --query 'SELECT 1' 2>/dev/null | grep -qx 1; }

start() {
  if pid_alive "$PIDFILE"; then log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT: nothing to do"; return 0; fi
  install
  if port_open 127.0.0.1 "$PORT"; then
    if ready; then log "a ClickHouse server not started by this script already answers on 127.0.0.1:$PORT: using it"; return 0; fi
    die "port $PORT is taken by something that is not ClickHouse"
  fi
  write_config
  log "starting ClickHouse on 127.0.0.1:$PORT (data $DIR/data)"
  setsid nohup "$(server_bin)" --config-file="$DIR/config.xml" > "$DIR/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  if ! wait_for "$TIMEOUT" ready; then
    log "ClickHouse did not answer SELECT 1 within ${TIMEOUT}s; last lines of its log:"
    tail -n 40 "$ERRFILE" "$DIR/logs/stdout.log" 2>/dev/null >&2 || true
    stop_pid clickhouse "$PIDFILE" >/dev/null
    exit 1
  fi
  log "ready: SELECT 1 answered on 127.0.0.1:$PORT ($(clickhouse-client --port "$PORT" --query 'SELECT version()'))"
}

status() {
  if pid_alive "$PIDFILE"; then
    if ready; then log "running (pid $(cat "$PIDFILE")), answering on 127.0.0.1:$PORT"; else log "running (pid $(cat "$PIDFILE")) but not answering"; exit 1; fi
  else log "not running"; exit 1; fi
}

case "${1:-}" in
  install) install ;;
  start)   start ;;
  stop)    stop_pid clickhouse "$PIDFILE" ;;
  status)  status ;;
  *) echo "usage: $0 start|stop|status|install" >&2; exit 2 ;;
esac
