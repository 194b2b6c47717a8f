#!/usr/bin/env bash
# Installs what the client-matrix tests need, idempotently: Debian's kcat, a Python venv with
# kafka-python, aiokafka and Quix Streams, KafkaJS from npm, the Java client scenario (Apache Kafka's
# kafka-clients from Maven Central, built with mvn), the Kafka Streams scenario (kafka-streams,
# built the same way), the Go clients' scenario (franz-go, sarama
# and kafka-go, built with go), and the Kafka Connect scenario (connect-runtime, Debezium's
# PostgreSQL source and JDBC sink, Debian's PostgreSQL), and OpenSSL's headers for librdkafka's
# TLS. Safe to run repeatedly; skips what is present.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="$ROOT/.test-deps"
mkdir -p "$STATE"

if ! command -v kcat >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq kcat >/dev/null
fi

# The tests' and sluice-load's librdkafka is built with TLS (rdkafka's "ssl" feature): OpenSSL's
# headers and pkg-config to find them; openssl to make certificates in benches/tls.sh.
if ! pkg-config --exists openssl 2>/dev/null || ! command -v openssl >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq libssl-dev pkg-config openssl >/dev/null
fi

if [ ! -x "$STATE/venv/bin/python" ]; then
    python3 -m venv "$STATE/venv"
fi
# Compression codecs: kafka-python uses python-snappy, lz4 and zstandard; aiokafka uses cramjam.
if ! "$STATE/venv/bin/python" -c "import kafka, aiokafka, snappy, lz4.frame, zstandard, cramjam" >/dev/null 2>&1; then
    "$STATE/venv/bin/pip" install -q --disable-pip-version-check "kafka-python==2.2.*" "aiokafka==0.12.*" \
        python-snappy lz4 zstandard cramjam
fi
# Quix Streams (a stream processor on confluent-kafka's bundled librdkafka), in the same venv.
if ! "$STATE/venv/bin/python" -c "import quixstreams" >/dev/null 2>&1; then
    "$STATE/venv/bin/pip" install -q --disable-pip-version-check "quixstreams==3.28.*"
fi

if command -v npm >/dev/null 2>&1 && [ ! -d "$STATE/node/node_modules/kafkajs" ]; then
    mkdir -p "$STATE/node"
    (cd "$STATE/node" && npm install --silent --no-audit --no-fund kafkajs@2 >/dev/null)
fi
# The Java client: compiled classes and the dependency jars under .test-deps/java; rebuilt when
# the scenario or its pom changed.
JAVA_SRC="$ROOT/scripts/client-matrix/java"
JAVA_CLASS="$STATE/java/build/classes/sluice/JavaClientTest.class"
if command -v mvn >/dev/null 2>&1 && command -v java >/dev/null 2>&1; then
    if [ ! -f "$JAVA_CLASS" ] || [ "$JAVA_SRC/pom.xml" -nt "$JAVA_CLASS" ] ||
        [ -n "$(find "$JAVA_SRC/src" -name '*.java' -newer "$JAVA_CLASS")" ]; then
        rm -rf "$STATE/java"
        mvn -q -B -Dstyle.color=never -f "$JAVA_SRC/pom.xml" -DbuildDir="$STATE/java/build" \
            compile dependency:copy-dependencies -DoutputDirectory="$STATE/java/lib"
    fi
fi
# Kafka Streams: the same, under .test-deps/streams (kafka-streams pulls RocksDB's JNI jar).
STREAMS_SRC="$ROOT/scripts/client-matrix/streams"
STREAMS_CLASS="$STATE/streams/build/classes/sluice/StreamsTest.class"
if command -v mvn >/dev/null 2>&1 && command -v java >/dev/null 2>&1; then
    if [ ! -f "$STREAMS_CLASS" ] || [ "$STREAMS_SRC/pom.xml" -nt "$STREAMS_CLASS" ] ||
        [ "$STREAMS_SRC/src/main/java/sluice/StreamsTest.java" -nt "$STREAMS_CLASS" ]; then
        rm -rf "$STATE/streams"
        mvn -q -B -Dstyle.color=never -f "$STREAMS_SRC/pom.xml" -DbuildDir="$STATE/streams/build" \
            compile dependency:copy-dependencies -DoutputDirectory="$STATE/streams/lib"
    fi
fi
# Kafka Connect: the worker's jars (connect-runtime) and two Debezium plugins, each in its own
# directory under plugins/ (the worker's plugin.path), from the poms in
# scripts/client-matrix/connect; refetched when a pom changed. PostgreSQL (Debian's) for the
# connectors' databases.
CONNECT_SRC="$ROOT/scripts/client-matrix/connect"
CONNECT="$STATE/connect"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq postgresql >/dev/null
fi
if command -v mvn >/dev/null 2>&1 && command -v java >/dev/null 2>&1; then
    stale=""
    for pom in "$CONNECT_SRC"/*/pom.xml; do
        [ -f "$CONNECT/ready" ] && [ ! "$pom" -nt "$CONNECT/ready" ] || stale=1
    done
    if [ -n "$stale" ]; then
        rm -rf "$CONNECT"
        mvn -q -B -Dstyle.color=never -s "$CONNECT_SRC/settings.xml" -f "$CONNECT_SRC/worker/pom.xml" \
            dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$CONNECT/worker"
        for plugin in postgres-source jdbc-sink; do
            # Kafka's own jars come from the worker, never from a plugin's directory; so does
            # Jackson's core (see jdbc-sink/pom.xml).
            mvn -q -B -Dstyle.color=never -s "$CONNECT_SRC/settings.xml" -f "$CONNECT_SRC/$plugin/pom.xml" \
                dependency:copy-dependencies -DincludeScope=runtime \
                -DexcludeGroupIds=org.apache.kafka,com.fasterxml.jackson.core \
                -DoutputDirectory="$CONNECT/plugins/$plugin"
        done
        touch "$CONNECT/ready"
    fi
fi
# The Go clients: one binary, rebuilt when its source or module files changed.
GO_SRC="$ROOT/scripts/client-matrix/go"
GO_BIN="$STATE/go/go-matrix"
if command -v go >/dev/null 2>&1; then
    if [ ! -x "$GO_BIN" ] || [ "$GO_SRC/main.go" -nt "$GO_BIN" ] || [ "$GO_SRC/go.mod" -nt "$GO_BIN" ] ||
        [ "$GO_SRC/go.sum" -nt "$GO_BIN" ]; then
        mkdir -p "$STATE/go"
        (cd "$GO_SRC" && go build -o "$GO_BIN" .)
    fi
fi
echo "test dependencies ready in $STATE"
