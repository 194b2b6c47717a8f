#!/usr/bin/env bash
# Runs the client matrix against a running broker.
#
# Usage: run.sh BOOTSTRAP [client...]   clients: kafka-python aiokafka kafkajs kcat kafka-python-groups
#        aiokafka-groups kafkajs-groups java kafka-streams kafka-streams-eos go kafka-connect quixstreams (default: all)
#        sasl kafkajs-sasl java-sasl (not in the default: BOOTSTRAP must be a SASL_PLAINTEXT listener where the
#        user MATRIX_SASL_USER/MATRIX_SASL_PASSWORD, default alice/alice-secret, has both SCRAM credentials)
#        tls kafkajs-tls java-tls (not in the default: the same over a SASL_SSL BOOTSTRAP, plus mutual TLS at
#        MATRIX_MTLS_BOOTSTRAP; env MATRIX_SECURITY_PROTOCOL=SASL_SSL, MATRIX_SSL_CA, MATRIX_SSL_CERT,
#        MATRIX_SSL_KEY, MATRIX_SSL_KEYSTORE (key and certificate in one PEM); tests/client_matrix.rs sets them)
#
# Each client script runs its scenarios on fresh topics and prints PASS/FAIL/SKIP lines; this
# prints a summary naming every failed scenario and exits non-zero if any client failed, timed out
# or lacks its dependencies (installed by scripts/install-test-deps.sh). Env: MATRIX_TIMEOUT_S
# (per client, default 300), MATRIX_DEBUG=1 (client debug logs), MATRIX_KCAT_PARTITIONS.
set -uo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 BOOTSTRAP [kafka-python|aiokafka|kafkajs|kcat|kafka-python-groups|aiokafka-groups|kafkajs-groups|java|kafka-streams|kafka-streams-eos|go|kafka-connect|quixstreams|sasl|kafkajs-sasl|java-sasl|tls|kafkajs-tls|java-tls ...]" >&2
    exit 2
fi
BOOT="$1"
shift
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DEPS="${MATRIX_DEPS_DIR:-$ROOT/.test-deps}"
PY="$DEPS/venv/bin/python"
TIMEOUT_S="${MATRIX_TIMEOUT_S:-300}"
CLIENTS=("$@")
export KAFKAJS_PATH="$DEPS/node/node_modules/kafkajs"
export JAVA_MATRIX_DIR="$DEPS/java"
export STREAMS_MATRIX_DIR="$DEPS/streams"
export CONNECT_MATRIX_DIR="$DEPS/connect"
[ ${#CLIENTS[@]} -eq 0 ] && CLIENTS=(kafka-python aiokafka kafkajs kcat kafka-python-groups aiokafka-groups kafkajs-groups java kafka-streams kafka-streams-eos go kafka-connect quixstreams)

# Prints why a client cannot run, or nothing.
missing_dep() {
    case "$1" in
        kafka-python | kafka-python-groups) "$PY" -c "import kafka, snappy, lz4.frame, zstandard" 2>/dev/null || echo "no $PY with kafka-python, python-snappy, lz4, zstandard" ;;
        aiokafka | aiokafka-groups) "$PY" -c "import aiokafka, cramjam" 2>/dev/null || echo "no $PY with aiokafka and cramjam" ;;
        kafkajs | kafkajs-groups)
            command -v node >/dev/null || { echo "node not installed"; return; }
            [ -d "$DEPS/node/node_modules/kafkajs" ] || echo "no kafkajs in $DEPS/node/node_modules"
            ;;
        kcat) command -v kcat >/dev/null || echo "kcat not installed" ;;
        java)
            command -v java >/dev/null || { echo "java not installed"; return; }
            [ -f "$DEPS/java/build/classes/sluice/JavaClientTest.class" ] || echo "no Java scenario built in $DEPS/java"
            ;;
        kafka-streams | kafka-streams-eos)
            command -v java >/dev/null || { echo "java not installed"; return; }
            [ -f "$DEPS/streams/build/classes/sluice/StreamsTest.class" ] || echo "no Kafka Streams scenario built in $DEPS/streams"
            ;;
        go) [ -x "$DEPS/go/go-matrix" ] || echo "no Go scenario built in $DEPS/go" ;;
        quixstreams) "$PY" -c "import quixstreams, kafka" 2>/dev/null || echo "no $PY with quixstreams and kafka-python" ;;
        java-sasl | java-tls)
            command -v java >/dev/null || { echo "java not installed"; return; }
            [ -f "$DEPS/java/build/classes/sluice/JavaClientTest.class" ] || echo "no Java scenario built in $DEPS/java"
            ;;
        sasl | tls) "$PY" -c "import confluent_kafka, kafka, aiokafka" 2>/dev/null || echo "no $PY with confluent-kafka, kafka-python and aiokafka" ;;
        kafkajs-sasl | kafkajs-tls)
            command -v node >/dev/null || { echo "node not installed"; return; }
            [ -d "$DEPS/node/node_modules/kafkajs" ] || echo "no kafkajs in $DEPS/node/node_modules"
            ;;
        kafka-connect)
            command -v java >/dev/null || { echo "java not installed"; return; }
            command -v psql >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ||
                { echo "no PostgreSQL server (Debian's postgresql)"; return; }
            "$PY" -c "import kafka" 2>/dev/null || { echo "no $PY with kafka-python"; return; }
            [ -f "$DEPS/connect/ready" ] || echo "no Connect worker and plugins in $DEPS/connect"
            ;;
        *) echo "unknown client" ;;
    esac
}

# A properties file with the Java client's SCRAM-SHA-512 settings (for java-sasl and, over
# SASL_SSL with the CA as a PEM trust store, java-tls).
java_sasl_props() {
    local f="${TMPDIR:-/tmp}/sluice-java-sasl-$$.properties"
    printf '%s\n' "security.protocol=${MATRIX_SECURITY_PROTOCOL:-SASL_PLAINTEXT}" "sasl.mechanism=SCRAM-SHA-512" \
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"${MATRIX_SASL_USER:-alice}\" password=\"${MATRIX_SASL_PASSWORD:-alice-secret}\";" > "$f"
    if [ -n "${MATRIX_SSL_CA:-}" ]; then
        printf '%s\n' "ssl.truststore.type=PEM" "ssl.truststore.location=$MATRIX_SSL_CA" >> "$f"
    fi
    echo "$f"
}

# The Java client's mutual-TLS settings (for java-tls): PEM key store and trust store.
java_mtls_props() {
    local f="${TMPDIR:-/tmp}/sluice-java-mtls-$$.properties"
    printf '%s\n' "security.protocol=SSL" "ssl.truststore.type=PEM" "ssl.truststore.location=$MATRIX_SSL_CA" \
        "ssl.keystore.type=PEM" "ssl.keystore.location=$MATRIX_SSL_KEYSTORE" > "$f"
    echo "$f"
}

command_for() {
    case "$1" in
        kafka-python) echo "$PY" "$HERE/kafka_python_test.py" ;;
        aiokafka) echo "$PY" "$HERE/aiokafka_test.py" ;;
        kafkajs) echo node "$HERE/kafkajs_test.js" ;; # finds kafkajs via KAFKAJS_PATH
        kcat) echo bash "$HERE/kcat_test.sh" ;;
        kafka-python-groups) echo "$PY" "$HERE/kafka_python_groups.py" ;;
        aiokafka-groups) echo "$PY" "$HERE/aiokafka_groups.py" ;;
        kafkajs-groups) echo node "$HERE/kafkajs_groups.js" ;;
        java) echo bash "$HERE/java_test.sh" ;; # classpath from JAVA_MATRIX_DIR
        kafka-streams) echo bash "$HERE/streams_test.sh" ;; # classpath from STREAMS_MATRIX_DIR
        kafka-streams-eos) echo env STREAMS_PROCESSING_GUARANTEE=exactly_once_v2 bash "$HERE/streams_test.sh" ;;
        go) echo "$DEPS/go/go-matrix" ;;
        quixstreams) echo "$PY" "$HERE/quixstreams_test.py" ;;
        kafka-connect) echo "$PY" "$HERE/connect_test.py" ;; # jars from CONNECT_MATRIX_DIR
        sasl) echo "$PY" "$HERE/sasl_test.py" ;;
        java-sasl) echo env MATRIX_JAVA_CLIENT_PROPS="$(java_sasl_props)" bash "$HERE/java_test.sh" ;;
        kafkajs-sasl | kafkajs-tls) echo node "$HERE/kafkajs_sasl.js" ;;
        tls) echo "$PY" "$HERE/sasl_test.py" ;;
        # SCRAM-SHA-512 inside TLS at BOOTSTRAP, then mutual TLS at MATRIX_MTLS_BOOTSTRAP.
        java-tls) echo env MATRIX_JAVA_CLIENT_PROPS="$(java_sasl_props)" MATRIX_JAVA_MTLS_PROPS="$(java_mtls_props)" bash "$HERE/java_tls_test.sh" ;;
    esac
}

failures=()
for client in "${CLIENTS[@]}"; do
    why="$(missing_dep "$client")"
    if [ -n "$why" ]; then
        echo "FAIL $client: dependency missing: $why (run scripts/install-test-deps.sh)"
        failures+=("$client: dependency missing")
        continue
    fi
    echo "=== $client"
    export MATRIX_CLIENT="$client" # the name scripts that serve several clients report under
    start_s=$SECONDS
    out="$(mktemp)"
    # shellcheck disable=SC2046 # the command is a plain word list without spaces in paths we control
    timeout --kill-after=10 "$TIMEOUT_S" $(command_for "$client") "$BOOT" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    echo "=== $client exit $rc in $((SECONDS - start_s))s"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        failures+=("$client: timed out after ${TIMEOUT_S}s")
    elif [ "$rc" != 0 ]; then
        scen="$(sed -n "s/^FAIL $client \([^ ]*\).*/\1/p" "$out" | tr '\n' ' ')"
        failures+=("$client: exit $rc, failed scenarios: ${scen:-none reported}")
    fi
    rm -f "$out"
done

if [ ${#failures[@]} -gt 0 ]; then
    echo "client matrix FAILED:"
    printf '  %s\n' "${failures[@]}"
    exit 1
fi
echo "client matrix passed: ${CLIENTS[*]}"
