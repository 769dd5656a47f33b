#!/usr/bin/env bash
# The whole local stack: Kafka (one node, or ZAITS_KAFKA_NODES=3 for a 3-node
# cluster on 19092-19094) and ClickHouse.
#   deploy/local/stack.sh start|stop|status
# stop stops ClickHouse, the single Kafka node and every cluster node started
# from this state folder, whatever ZAITS_KAFKA_NODES says.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in
  start)  "$HERE/kafka.sh" start; "$HERE/clickhouse.sh" start ;;
  stop)   "$HERE/clickhouse.sh" stop; "$HERE/kafka.sh" stop-all ;;
  status) rc=0; "$HERE/kafka.sh" status || rc=1; "$HERE/clickhouse.sh" status || rc=1; exit $rc ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
