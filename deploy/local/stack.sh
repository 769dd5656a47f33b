#!/usr/bin/env bash
# The whole local stack: Kafka and ClickHouse.
#   deploy/local/stack.sh start|stop|status
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
  start)  "$HERE/kafka.sh" start; "$HERE/clickhouse.sh" start ;;
  stop)   "$HERE/clickhouse.sh" stop; "$HERE/kafka.sh" stop ;;
  status) rc=0; "$HERE/kafka.sh" status || rc=1; "$HERE/clickhouse.sh" status || rc=1; exit $rc ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
