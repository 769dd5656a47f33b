#!/usr/bin/env bash
# `make run`: start Kafka and ClickHouse if they are not running, run
# `zaits all -dev` in the foreground, and on Ctrl-C (or any exit) stop the
# system and then the servers this script started (servers that were already
# running are left alone).
#
#   deploy/local/run.sh BINARY [flags...]
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN=$1; shift

started=()
for s in kafka clickhouse; do
  if "$HERE/$s.sh" status >/dev/null 2>&1; then
    log "$s already running: leaving it running afterwards"
  else
    "$HERE/$s.sh" start || exit 1
    started+=("$s")
  fi
done

stop_started() {
  [ ${#started[@]} -eq 0 ] && return
  for s in "${started[@]}"; do "$HERE/$s.sh" stop & done
  wait
}
trap stop_started EXIT

"$BIN" all -dev "$@" &
pid=$!
# Ctrl-C reaches zaits directly (same process group); TERM is passed on.
trap 'kill -TERM $pid 2>/dev/null' TERM
trap ':' INT
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
wait "$pid" 2>/dev/null
