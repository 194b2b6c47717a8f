#!/usr/bin/env bash
# The Kafka Streams scenario (scripts/client-matrix/streams: a word count and a windowed count,
# stopped and restarted mid-stream), built by scripts/install-test-deps.sh into
# $STREAMS_MATRIX_DIR. Usage: streams_test.sh BOOTSTRAP. Streams' and the clients' log lines at
# WARN and above go to stderr (INFO with MATRIX_DEBUG=1), but for the warning that the state dir
# is in the OS's temp dir.
set -euo pipefail
DIR="${STREAMS_MATRIX_DIR:?set by run.sh}"
LEVEL=warn
[ -n "${MATRIX_DEBUG:-}" ] && LEVEL=info
exec java -Xmx512m -Dorg.slf4j.simpleLogger.defaultLogLevel="$LEVEL" \
    -Dorg.slf4j.simpleLogger.log.org.apache.kafka.streams.processor.internals.StateDirectory=error \
    -Dorg.slf4j.simpleLogger.showDateTime=true -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
    -cp "$DIR/build/classes:$DIR/lib/*" sluice.StreamsTest "$1"
