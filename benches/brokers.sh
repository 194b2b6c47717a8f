# Sourced by benches/transactions.sh and benches/transactions-java.sh: the release Sluice broker
# and the Apache Kafka broker (scripts/kafka-ref.sh) a benchmark run starts and stops. The
# caller sets WORK (work dir; the broker's data goes to $WORK/data), SLUICE (the binary),
# SLUICE_ADDR and PORT (its port), KAFKA_ADDR and KAFKA_REF. Stops only the brokers it started,
# by PID, on exit too.
PID=
KAFKA_UP=0
stop_all() {
    if [[ -n $PID ]]; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=
    fi
    if [[ $KAFKA_UP == 1 ]]; then
        timeout 60 "$KAFKA_REF" stop >/dev/null 2>&1 || true
        KAFKA_UP=0
    fi
}
trap 'stop_all; rm -rf "$WORK/data"' EXIT

start_sluice() { # [more sluice flags...]: `--flush never --io-mode direct`, 2 shards
    "$SLUICE" --listen "$SLUICE_ADDR" --data-dir "$WORK/data" --flush never --io-mode direct \
        --log-level warn --metrics-listen none "$@" >"$WORK/sluice.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "sluice did not start; see $WORK/sluice.log" >&2
    return 1
}

start_kafka() { # PARTITIONS (of auto-created topics); fails if Kafka did not start
    local ok=0
    KAFKA_REF_ADDR=$KAFKA_ADDR KAFKA_REF_CONTROLLER_ADDR=127.0.0.1:$((PORT + 2)) KAFKA_REF_PARTITIONS=$1 \
        TMPDIR=$WORK timeout 180 "$KAFKA_REF" start >"$WORK/kafka.log" 2>&1 || ok=1
    # Stopped on exit even if the start failed half-way (stop is harmless when nothing runs).
    KAFKA_UP=1
    PID=
    return $ok
}
