#!/usr/bin/env bash
# The Java client scenario (scripts/client-matrix/java, Apache Kafka's kafka-clients), built by
# scripts/install-test-deps.sh into $JAVA_MATRIX_DIR. Usage: java_test.sh BOOTSTRAP
set -euo pipefail
DIR="${JAVA_MATRIX_DIR:?set by run.sh}"
exec java -cp "$DIR/build/classes:$DIR/lib/*" sluice.JavaClientTest "$1"
