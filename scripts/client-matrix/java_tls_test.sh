#!/usr/bin/env bash
# The Java client scenario twice over TLS: SCRAM-SHA-512 inside TLS at BOOTSTRAP (a SASL_SSL
# listener; settings in MATRIX_JAVA_CLIENT_PROPS), then mutual TLS at MATRIX_MTLS_BOOTSTRAP (an
# SSL listener; settings in MATRIX_JAVA_MTLS_PROPS) on topics starting with "mtls-java", which
# the broker's ACLs leave to the client certificate's principal. Usage: java_tls_test.sh BOOTSTRAP
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
echo "--- SASL_SSL (SCRAM-SHA-512)"
bash "$HERE/java_test.sh" "$1"
echo "--- SSL with a client certificate"
MATRIX_JAVA_CLIENT_PROPS="${MATRIX_JAVA_MTLS_PROPS:?set by run.sh}" MATRIX_TOPIC_PREFIX=mtls-java \
    bash "$HERE/java_test.sh" "${MATRIX_MTLS_BOOTSTRAP:?set by the test}"
