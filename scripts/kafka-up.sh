#!/usr/bin/env bash
# Start a single-node Apache Kafka broker (KRaft: broker + controller in one JVM) for dev,
# tests and CI, without Docker. Idempotent: when it is already running it says so and exits 0.
#
#   bash scripts/kafka-up.sh          # npm run kafka:up
#   KAFKA_PORT=19092 bash scripts/kafka-up.sh
#
# First run: Maven fetches org.apache.kafka:kafka_2.13 (see scripts/kafka/pom.xml) and its
# runtime classpath into .kafka/lib; later runs skip Maven (works offline).
# Everything lives under .kafka/ (git-ignored): lib/, data/, server.properties, kafka.pid,
# kafka.log. Stop it with scripts/kafka-down.sh. See docs/KAFKA.md.
#
# Env (all optional):
#   KAFKA_PORT              client listener port on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT   KRaft controller port (default KAFKA_PORT + 1)
#   KAFKA_HEAP_OPTS         JVM heap (default "-Xms128m -Xmx512m")
#   KAFKA_JVM_OPTS          extra JVM options
#   KAFKA_START_TIMEOUT_S   how long to wait for the broker (default 90)
#   KAFKA_HOME_DIR          state folder (default <repo>/.kafka)
#   KAFKA_LIB_DIR           the broker's classpath (default $KAFKA_HOME_DIR/lib): a second broker
#                           with its own KAFKA_HOME_DIR can reuse <repo>/.kafka/lib (no Maven)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_HOME_DIR="${KAFKA_HOME_DIR:-$ROOT/.kafka}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
KAFKA_START_TIMEOUT_S="${KAFKA_START_TIMEOUT_S:-90}"

POM="$ROOT/scripts/kafka/pom.xml"
LIB="${KAFKA_LIB_DIR:-$KAFKA_HOME_DIR/lib}"
DATA="$KAFKA_HOME_DIR/data"
PROPS="$KAFKA_HOME_DIR/server.properties"
LOG4J="$KAFKA_HOME_DIR/log4j.properties"
PID_FILE="$KAFKA_HOME_DIR/kafka.pid"
PORT_FILE="$KAFKA_HOME_DIR/kafka.port"
LOG_FILE="$KAFKA_HOME_DIR/kafka.log"
HOST=127.0.0.1

say() { echo "kafka-up: $*"; }
die() { echo "kafka-up: error: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }
elapsed_s() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# True when something accepts TCP connections on $HOST:$1.
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# True when the pid file names a live JVM running kafka.Kafka (not a recycled pid).
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  local cmd
  cmd="$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null || true)"
  [[ "$cmd" == *" kafka.Kafka "* ]] || return 1
  echo "$pid"
}

# Asks the broker for its cluster metadata with kafkajs (the client the project uses), so
# "ready" means a client can talk to it, not only that the port is bound.
describe_cluster() {
  [[ -d "$ROOT/node_modules/kafkajs" ]] || return 0 # no node deps yet: the TCP check must do
  (cd "$ROOT" && node scripts/kafka/describe-cluster.mjs "$HOST:$KAFKA_PORT")
}

command -v java >/dev/null || die "java not found (Java 17+ is needed to run the broker)"

if pid="$(running_pid)"; then
  running_port="$(cat "$PORT_FILE" 2>/dev/null || echo 9092)"
  if [[ "$running_port" != "$KAFKA_PORT" ]]; then
    die "the broker of this checkout already runs on port $running_port (pid $pid); run scripts/kafka-down.sh before starting it on $KAFKA_PORT"
  fi
  say "already running (pid $pid, $HOST:$KAFKA_PORT, log $LOG_FILE)"
  exit 0
fi
rm -f "$PID_FILE"

if port_open "$KAFKA_PORT"; then
  if describe_cluster >/dev/null 2>&1; then
    say "a Kafka broker not started from this checkout already answers on $HOST:$KAFKA_PORT; using it"
    exit 0
  fi
  die "port $KAFKA_PORT on $HOST is taken by something that is not a Kafka broker; set KAFKA_PORT"
fi
if port_open "$KAFKA_CONTROLLER_PORT"; then
  die "controller port $KAFKA_CONTROLLER_PORT on $HOST is taken; set KAFKA_CONTROLLER_PORT"
fi

mkdir -p "$KAFKA_HOME_DIR"

# --- 1. classpath: fetch once, then reuse (offline-friendly) -----------------------------------
# .complete records the pom's checksum: editing the pom (e.g. a version bump) re-fetches.
pom_sum="$(sha256sum "$POM" | cut -d' ' -f1)"
if [[ -f "$LIB/.complete" && "$(cat "$LIB/.complete")" == "$pom_sum" ]]; then
  :
else
  command -v mvn >/dev/null || die "mvn not found and $LIB is not populated (Maven 3.8+ is needed once)"
  say "fetching the Kafka broker with Maven into $LIB (first run only)..."
  t0="$(now_ms)"
  mkdir -p "$(dirname "$LIB")"
  tmp_lib="$LIB.tmp.$$"
  rm -rf "$tmp_lib"
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp_lib" >"$KAFKA_HOME_DIR/mvn.log" 2>&1; then
    tail -n 30 "$KAFKA_HOME_DIR/mvn.log" >&2
    die "Maven could not fetch the broker (full output: $KAFKA_HOME_DIR/mvn.log)"
  fi
  ls "$tmp_lib"/kafka_2.13-*.jar >/dev/null 2>&1 || die "Maven finished but no kafka_2.13 jar in $tmp_lib"
  echo "$pom_sum" >"$tmp_lib/.complete"
  rm -rf "$LIB"
  mv "$tmp_lib" "$LIB"
  say "fetched $(ls "$LIB"/*.jar | wc -l) jars in $(elapsed_s "$t0")s"
fi

# --- 2. config (rewritten on every start, so port overrides apply) ----------------------------
mkdir -p "$DATA"
cat >"$PROPS" <<EOF
# Written by scripts/kafka-up.sh on every start; edit the script, not this file.
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA
# Single node: internal topics with one replica, or groups fail with "coordinator not available".
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.partitions=4
default.replication.factor=1
# Shared 2-core dev machines: few threads, and keep test topics from piling up on disk.
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
EOF

cat >"$LOG4J" <<'EOF'
# Broker logging for dev: warnings and start/stop lines only, to stdout (-> .kafka/kafka.log).
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.Kafka$=INFO
EOF

CP="$LIB/*"

# --- 3. format KRaft storage once ---------------------------------------------------------------
if [[ ! -f "$DATA/meta.properties" ]]; then
  cluster_id="$(java -cp "$CP" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  [[ -n "$cluster_id" ]] || die "kafka.tools.StorageTool random-uuid printed nothing"
  if ! java -Dlog4j.configuration="file:$LOG4J" -cp "$CP" kafka.tools.StorageTool format \
    --config "$PROPS" --cluster-id "$cluster_id" --ignore-formatted >"$KAFKA_HOME_DIR/format.log" 2>&1; then
    cat "$KAFKA_HOME_DIR/format.log" >&2
    die "formatting KRaft storage in $DATA failed"
  fi
  say "formatted KRaft storage in $DATA (cluster id $cluster_id)"
fi

# --- 4. start in the background ---------------------------------------------------------------
t0="$(now_ms)"
echo "=== kafka-up $(date -u +%FT%TZ) port $KAFKA_PORT ===" >>"$LOG_FILE"
log_start=$(($(stat -c %s "$LOG_FILE") + 1)) # only this run's lines count as "started"
# setsid: own session, so Ctrl-C in the terminal or test runner that started it does not kill
# it. Non-interactive bash does not make background jobs group leaders, so setsid execs in
# place and $! is the JVM's pid.
# shellcheck disable=SC2086 # the *_OPTS variables are word lists
setsid nohup java $KAFKA_HEAP_OPTS \
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
  -Dlog4j.configuration="file:$LOG4J" $KAFKA_JVM_OPTS \
  -cp "$CP" kafka.Kafka "$PROPS" </dev/null >>"$LOG_FILE" 2>&1 &
pid=$!
echo "$pid" >"$PID_FILE"
echo "$KAFKA_PORT" >"$PORT_FILE"

# --- 5. wait until a client can use it --------------------------------------------------------
deadline=$((SECONDS + KAFKA_START_TIMEOUT_S))
started=""
while ((SECONDS < deadline)); do
  if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$PID_FILE"
    echo "--- last lines of $LOG_FILE ---" >&2
    tail -n 40 "$LOG_FILE" >&2
    die "the broker exited during start-up; see $LOG_FILE"
  fi
  if port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' <(tail -c "+$log_start" "$LOG_FILE"); then
    started=1
    break
  fi
  sleep 0.25
done
if [[ -z "$started" ]]; then
  echo "--- last lines of $LOG_FILE ---" >&2
  tail -n 40 "$LOG_FILE" >&2
  die "the broker (pid $pid) did not answer on $HOST:$KAFKA_PORT within ${KAFKA_START_TIMEOUT_S}s; see $LOG_FILE (stop it with scripts/kafka-down.sh)"
fi
if ! describe_cluster >/dev/null; then
  die "the broker (pid $pid) listens on $HOST:$KAFKA_PORT but kafkajs describeCluster failed; see $LOG_FILE"
fi
say "started (pid $pid) on $HOST:$KAFKA_PORT in $(elapsed_s "$t0")s; log $LOG_FILE"
