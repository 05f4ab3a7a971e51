#!/usr/bin/env bash
# Stop the broker started by scripts/kafka-up.sh: SIGTERM (controlled shutdown), wait, then
# SIGKILL. Idempotent: when it is not running it says so and exits 0. Data in .kafka/data is
# kept; delete .kafka/data for a fresh cluster (kafka-up formats it again).
#
# Env (optional), as for kafka-up.sh: KAFKA_STOP_TIMEOUT_S (default 30), KAFKA_HOME_DIR
# (default <repo>/.kafka: the broker whose kafka.pid is there is the one stopped), KAFKA_PORT
# (when set, the broker is stopped only if it is the one on that port: a guard against stopping
# another broker by a wrong KAFKA_HOME_DIR). KAFKA_LIB_DIR is accepted and not needed here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_HOME_DIR="${KAFKA_HOME_DIR:-$ROOT/.kafka}"
KAFKA_STOP_TIMEOUT_S="${KAFKA_STOP_TIMEOUT_S:-30}"
PID_FILE="$KAFKA_HOME_DIR/kafka.pid"

say() { echo "kafka-down: $*"; }

if [[ ! -f "$PID_FILE" ]]; then
  say "not running (no $PID_FILE)"
  exit 0
fi
pid="$(cat "$PID_FILE" 2>/dev/null || true)"
cmd=""
if [[ "$pid" =~ ^[0-9]+$ ]]; then
  cmd="$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null || true)"
fi
# Only ever signal our own broker: the pid may have been recycled by an unrelated process.
if [[ "$cmd" != *" kafka.Kafka "* ]]; then
  say "not running (stale pid file removed)"
  rm -f "$PID_FILE"
  exit 0
fi

running_port="$(cat "$KAFKA_HOME_DIR/kafka.port" 2>/dev/null || echo 9092)"
if [[ -n "${KAFKA_PORT:-}" && "$KAFKA_PORT" != "$running_port" ]]; then
  echo "kafka-down: error: the broker of $KAFKA_HOME_DIR (pid $pid) runs on port $running_port, not KAFKA_PORT=$KAFKA_PORT; not stopping it" >&2
  exit 1
fi

t0=$SECONDS
kill -TERM "$pid" 2>/dev/null || true
deadline=$((SECONDS + KAFKA_STOP_TIMEOUT_S))
while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
  sleep 0.2
done
if kill -0 "$pid" 2>/dev/null; then
  say "no exit ${KAFKA_STOP_TIMEOUT_S}s after SIGTERM; sending SIGKILL to $pid"
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
rm -f "$PID_FILE" "$KAFKA_HOME_DIR/kafka.port"
say "stopped (pid $pid) in $((SECONDS - t0))s"
