#!/usr/bin/env bash
# Apache Kafka as the reference beside Sluice: a single-node KRaft broker (combined broker and
# controller) run from Maven Central's jars, so that a client scenario can be run against both and
# a Sluice bug told from a client quirk.
#
# Usage: kafka-ref.sh start|stop|status|install|log
#   install  fetch kafka_2.13 and its runtime jars into .test-deps/kafka/lib (mvn, from the pom in
#            scripts/kafka-ref/); idempotent, redone only when that pom changed. `start` does it too.
#   start    format a fresh data dir (a temp dir) with a random cluster id and start the broker in
#            the background; waits until it has started (at most KAFKA_REF_START_TIMEOUT_S) and
#            fails with the log's tail if it has not.
#   stop     stop the broker this script started (its recorded PID; SIGTERM, then SIGKILL after
#            30 s) and remove its data dir.
#   status   exit 0 and say where it listens if it runs; exit 3 if not.
#   log      the tail of the running (or last) broker's log.
#
# Env: KAFKA_REF_ADDR (client listener, default 127.0.0.1:29092), KAFKA_REF_CONTROLLER_ADDR
# (default 127.0.0.1:29093), KAFKA_REF_PARTITIONS (partitions of auto-created topics, default 3 as
# the client-matrix tests give Sluice), KAFKA_REF_HEAP (default 768m), KAFKA_REF_START_TIMEOUT_S
# (default 60), KAFKA_REF_KEEP_DATA=1 (stop keeps the data dir), KAFKA_REF_DEPS
# (default .test-deps/kafka), KAFKA_REF_LOG_LINES (for `log`, default 50), KAFKA_REF_PROPS (more
# server.properties lines, whitespace-separated key=value, e.g. `log.flush.interval.messages=1`),
# TMPDIR (where the data dir is made, default /tmp). Only loopback addresses are accepted.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
POM="$ROOT/scripts/kafka-ref/pom.xml"
DEPS="${KAFKA_REF_DEPS:-$ROOT/.test-deps/kafka}"
LIB="$DEPS/lib"
STAMP="$DEPS/lib.stamp"
RUN="$DEPS/run" # pid, the data dir's path, the last log
ADDR="${KAFKA_REF_ADDR:-127.0.0.1:29092}"
CADDR="${KAFKA_REF_CONTROLLER_ADDR:-127.0.0.1:29093}"
PARTITIONS="${KAFKA_REF_PARTITIONS:-3}"
HEAP="${KAFKA_REF_HEAP:-768m}"
START_TIMEOUT_S="${KAFKA_REF_START_TIMEOUT_S:-60}"

die() {
    echo "kafka-ref: $*" >&2
    exit 1
}

need_tools() {
    command -v java >/dev/null 2>&1 || die "java not found (Java 17+ is needed)"
    command -v mvn >/dev/null 2>&1 || [ -f "$STAMP" ] || die "mvn not found (needed once, to fetch the Kafka jars)"
}

install() {
    need_tools
    if [ -f "$STAMP" ] && [ ! "$POM" -nt "$STAMP" ]; then
        return 0
    fi
    echo "kafka-ref: fetching Apache Kafka's jars into $LIB"
    local tmp="$DEPS/lib.tmp"
    rm -rf "$tmp"
    mkdir -p "$DEPS"
    mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" || die "mvn could not fetch the Kafka jars"
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar fetched"
    rm -rf "$LIB"
    mv "$tmp" "$LIB"
    touch "$STAMP"
}

is_loopback() {
    case "${1%:*}" in
        127.* | localhost) return 0 ;;
        *) return 1 ;;
    esac
}

# The PID this script recorded, if that process still runs and is our broker.
running_pid() {
    local pid
    [ -f "$RUN/pid" ] || return 1
    pid="$(cat "$RUN/pid")"
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $(cat "$RUN/datadir" 2>/dev/null)/server.properties" || return 1
    echo "$pid"
}

port_open() {
    local host="${1%:*}" port="${1##*:}"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

java_cp() {
    echo "$LIB/*"
}

start() {
    if ! is_loopback "$ADDR" || ! is_loopback "$CADDR"; then
        die "only loopback addresses: $ADDR, $CADDR"
    fi
    if pid="$(running_pid)"; then
        echo "kafka-ref: already running (pid $pid) on $ADDR"
        return 0
    fi
    install
    for a in "$ADDR" "$CADDR"; do
        port_open "$a" && die "$a is already in use"
    done
    mkdir -p "$RUN"
    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/kafka-ref.XXXXXX")"
    echo "$dir" >"$RUN/datadir"
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$CADDR
listeners=PLAINTEXT://$ADDR,CONTROLLER://$CADDR
advertised.listeners=PLAINTEXT://$ADDR
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=$PARTITIONS
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    local prop
    for prop in ${KAFKA_REF_PROPS:-}; do
        echo "$prop" >>"$dir/server.properties"
    done
    cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka-request.name = kafka.request.logger
logger.kafka-request.level = WARN
EOF
    local jvm=(-Xmx"$HEAP" -Xms128m -XX:+UseG1GC -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$dir/log4j2.properties")
    local cluster_id
    cluster_id="$(java "${jvm[@]}" -cp "$(java_cp)" kafka.tools.StorageTool random-uuid 2>>"$dir/format.log" | tail -1)"
    [ -n "$cluster_id" ] || die "no cluster id from StorageTool random-uuid: $(tail -5 "$dir/format.log")"
    java "${jvm[@]}" -cp "$(java_cp)" kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$dir/server.properties" >>"$dir/format.log" 2>&1 ||
        die "formatting $dir/data failed: $(tail -20 "$dir/format.log")"
    # setsid: the broker outlives this shell and gets no terminal signals meant for it.
    setsid java "${jvm[@]}" -cp "$(java_cp)" kafka.Kafka "$dir/server.properties" \
        >"$dir/stdout.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$RUN/pid"
    local deadline=$((SECONDS + START_TIMEOUT_S))
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "kafka-ref: the broker exited during start-up; its output:" >&2
            tail -30 "$dir/stdout.log" "$dir/server.log" >&2 2>/dev/null || true
            rm -f "$RUN/pid"
            exit 1
        fi
        if grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null && port_open "$ADDR"; then
            echo "kafka-ref: Apache Kafka $(kafka_version) running (pid $pid) on $ADDR, cluster id $cluster_id, data in $dir"
            return 0
        fi
        sleep 0.5
    done
    echo "kafka-ref: not started after ${START_TIMEOUT_S}s; stopping it. Log tail:" >&2
    tail -30 "$dir/server.log" "$dir/stdout.log" >&2 2>/dev/null || true
    stop >&2
    exit 1
}

kafka_version() {
    local jar
    for jar in "$LIB"/kafka_2.13-*.jar; do
        jar="${jar##*/kafka_2.13-}"
        echo "${jar%.jar}"
        return
    done
}

stop() {
    local pid dir
    dir="$(cat "$RUN/datadir" 2>/dev/null || true)"
    if pid="$(running_pid)"; then
        kill -TERM "$pid"
        local deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "kafka-ref: pid $pid still running after 30 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "kafka-ref: stopped (pid $pid)"
    else
        echo "kafka-ref: not running"
    fi
    rm -f "$RUN/pid"
    if [ -n "$dir" ] && [ -d "$dir" ]; then
        cp "$dir/server.log" "$RUN/last-server.log" 2>/dev/null || true
        if [ "${KAFKA_REF_KEEP_DATA:-0}" = 1 ]; then
            echo "kafka-ref: data kept in $dir"
        else
            rm -rf "$dir"
            rm -f "$RUN/datadir"
        fi
    fi
}

status() {
    local pid
    if pid="$(running_pid)"; then
        echo "kafka-ref: running (pid $pid) on $ADDR, data in $(cat "$RUN/datadir")"
        return 0
    fi
    echo "kafka-ref: not running"
    return 3
}

log() {
    local dir
    dir="$(cat "$RUN/datadir" 2>/dev/null || true)"
    if [ -n "$dir" ] && [ -f "$dir/server.log" ]; then
        tail -"${KAFKA_REF_LOG_LINES:-50}" "$dir/server.log"
    elif [ -f "$RUN/last-server.log" ]; then
        tail -"${KAFKA_REF_LOG_LINES:-50}" "$RUN/last-server.log"
    else
        die "no log yet"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    install) install && echo "kafka-ref: Apache Kafka $(kafka_version) jars in $LIB" ;;
    log) log ;;
    *)
        echo "usage: $0 start|stop|status|install|log" >&2
        exit 2
        ;;
esac
