#!/usr/bin/env bash
# Client-matrix scenarios for kcat (librdkafka) against a running Sluice broker.
#
# Usage: kcat_test.sh BOOTSTRAP [scenario...]
#
# kcat cannot create topics: every scenario writes to a fresh topic that the broker auto-creates
# with its default partition count (set MATRIX_KCAT_PARTITIONS to assert that count; the cargo test
# starts the broker with --num-partitions 3). Consumers are kcat's group-less -C mode. Each scenario
# prints PASS/FAIL; exit status 1 if any failed. MATRIX_DEBUG=1 adds `-d protocol,msg` to kcat calls.
set -uo pipefail

BOOT="${1:-127.0.0.1:9092}"
shift || true
WANTED=("$@")
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
KCAT_TIMEOUT_S=60
DEBUG_ARGS=()
[ -n "${MATRIX_DEBUG:-}" ] && DEBUG_ARGS=(-d protocol,msg,topic)

kc() {
    timeout "$KCAT_TIMEOUT_S" kcat -b "$BOOT" -X broker.address.family=v4 "${DEBUG_ARGS[@]}" "$@"
}

fail() {
    echo "assertion failed: $*" >&2
    return 1
}

fresh() {
    echo "kcat-$1-$(head -c 5 /dev/urandom | od -An -tx1 | tr -d ' \n')"
}

# Partition count of a topic from kcat -L -J (auto-creating it is not kcat -L's job: the producer
# creates it first).
partitions_of() {
    kc -L -J -t "$1" | python3 -c '
import json, sys
md = json.load(sys.stdin)
ts = [t for t in md["topics"] if t["topic"] == sys.argv[1]]
assert len(ts) == 1 and "error" not in ts[0], ts
print(len(ts[0]["partitions"]))' "$1"
}

# Consumes the whole topic (all partitions) from the beginning to the current end.
consume_all() {
    local topic="$1"
    shift
    kc -C -t "$topic" -o beginning -e -q "$@"
}

sc_metadata() {
    local t
    t="$(fresh meta)"
    echo "x" | kc -P -t "$t" || fail "produce to auto-create $t"
    kc -L -J >"$TMP/md.json" || fail "kcat -L"
    python3 - "$t" "$BOOT" "${MATRIX_KCAT_PARTITIONS:-}" "$TMP/md.json" <<'EOF' || return 1
import json, sys
topic, boot, want = sys.argv[1], sys.argv[2], sys.argv[3]
md = json.load(open(sys.argv[4]))
assert len(md["brokers"]) == 1, md["brokers"]
host, port = boot.rsplit(":", 1)
assert md["brokers"][0]["name"].endswith(":" + port), (md["brokers"], boot)
ts = [t for t in md["topics"] if t["topic"] == topic]
assert len(ts) == 1, "topic %s not in -L output" % topic
parts = ts[0]["partitions"]
assert "error" not in ts[0], ts[0]
if want:
    assert len(parts) == int(want), "%d partitions, want %s" % (len(parts), want)
for p in parts:
    assert p["leader"] == md["brokers"][0]["id"], p
    assert p["replicas"] and p["isrs"], p
EOF
}

sc_produce_consume_10k() {
    local t n=10000
    t="$(fresh bulk)"
    python3 -c "
for i in range($n):
    print('key-%d:value-%d' % (i % 97, i))" >"$TMP/in.txt"
    kc -P -t "$t" -K: -X acks=all -X linger.ms=5 <"$TMP/in.txt" || fail "produce"
    local parts
    parts="$(partitions_of "$t")" || fail "metadata of $t"
    if [ -n "${MATRIX_KCAT_PARTITIONS:-}" ] && [ "$parts" != "$MATRIX_KCAT_PARTITIONS" ]; then
        fail "$t has $parts partitions, want $MATRIX_KCAT_PARTITIONS"
    fi
    consume_all "$t" -f '%p %o %k %s\n' >"$TMP/out.txt" || fail "consume"
    python3 - "$n" "$parts" "$TMP/out.txt" <<'EOF' || return 1
import sys
n, parts = int(sys.argv[1]), int(sys.argv[2])
by_part, key_part = {}, {}
for line in open(sys.argv[3]):
    p, o, k, v = line.split()
    by_part.setdefault(int(p), []).append((int(o), k, v))
    assert key_part.setdefault(k, p) == p, "key %s on partitions %s and %s" % (k, key_part[k], p)
total = sum(len(v) for v in by_part.values())
assert total == n, "consumed %d of %d" % (total, n)
if parts > 1:
    assert len(by_part) > 1, "all records on one of %d partitions" % parts
for p, recs in by_part.items():
    assert [o for o, _, _ in recs] == list(range(len(recs))), "partition %d offsets not 0..n-1" % p
    idx = [int(v.split("-")[1]) for _, _, v in recs]
    assert idx == sorted(idx), "partition %d out of produce order" % p
    for _, k, v in recs:
        assert int(k.split("-")[1]) == int(v.split("-")[1]) % 97, (k, v)
print("  %d records over %d partitions" % (n, len(by_part)))
EOF
}

sc_headers_nulls() {
    local t
    t="$(fresh hdr)"
    # -Z: empty key/value are sent as NULL (and printed as NULL).
    printf 'k1:v1\n:novalue-key-null\nk3:\n' |
        kc -P -t "$t" -p 0 -K: -Z -H h1=x -H h2=yz || fail "produce"
    consume_all "$t" -p 0 -Z -f '%o|%k|%s|%h\n' >"$TMP/out.txt" || fail "consume"
    local want
    want="$(printf '0|k1|v1|h1=x,h2=yz\n1|NULL|novalue-key-null|h1=x,h2=yz\n2|k3|NULL|h1=x,h2=yz')"
    [ "$(cat "$TMP/out.txt")" = "$want" ] || fail "read back:
$(cat "$TMP/out.txt")
want:
$want"
}

sc_compression() {
    local codec t
    for codec in none gzip snappy lz4 zstd; do
        t="$(fresh "codec-$codec")"
        python3 -c "
for i in range(500):
    print('k%d:%s' % (i, ('compressible-%d-' % i) * 20))" >"$TMP/in.txt"
        kc -P -t "$t" -p 0 -K: -z "$codec" -X linger.ms=20 <"$TMP/in.txt" || fail "$codec: produce" || return 1
        consume_all "$t" -p 0 -f '%k:%s\n' >"$TMP/out.txt" || fail "$codec: consume" || return 1
        cmp -s "$TMP/in.txt" "$TMP/out.txt" || fail "$codec: read back $(wc -l <"$TMP/out.txt") lines, differs" || return 1
        consume_all "$t" -p 0 -o -1 -f '%o\n' | grep -qx 499 || fail "$codec: last offset is not 499" || return 1
        echo "  codec $codec ok"
    done
}

sc_acks() {
    local acks t
    for acks in 0 1 all; do
        t="$(fresh "acks-$acks")"
        seq 1 100 | sed "s/^/a$acks-/" >"$TMP/in.txt"
        kc -P -t "$t" -p 0 -X acks="$acks" <"$TMP/in.txt" || fail "acks=$acks: produce" || return 1
        consume_all "$t" -p 0 -f '%o %s\n' >"$TMP/out.txt" || fail "acks=$acks: consume" || return 1
        paste -d' ' <(seq 0 99) "$TMP/in.txt" | cmp -s - "$TMP/out.txt" ||
            fail "acks=$acks: read back $(wc -l <"$TMP/out.txt") records, differs" || return 1
    done
}

# Offset reported by kcat -Q for topic:partition:timestamp.
query_offset() {
    kc -Q -t "$1:0:$2" | awk '/offset/ {print $NF}'
}

sc_offsets_for_times() {
    local t i
    t="$(fresh offsets)"
    # kcat cannot set timestamps: produce with CreateTime=now, then look up the timestamps the
    # broker stored. Five one-record batches, then one run of 20000 records whose
    # batches span several milliseconds, so lookups must resolve records inside a batch.
    for i in 0 1 2 3 4; do
        echo "r$i" | kc -P -t "$t" -p 0 || fail "produce $i" || return 1
    done
    seq 1 20000 | kc -P -t "$t" -p 0 -X linger.ms=100 || fail "produce 20000"
    consume_all "$t" -p 0 -f '%o %T\n' >"$TMP/ts.txt" || fail "consume"
    [ "$(wc -l <"$TMP/ts.txt")" = 20005 ] || fail "consumed $(wc -l <"$TMP/ts.txt") of 20005"
    [ "$(query_offset "$t" -2)" = 0 ] || fail "earliest (-2) is $(query_offset "$t" -2), want 0"
    [ "$(query_offset "$t" -1)" = 20005 ] || fail "latest (-1) is $(query_offset "$t" -1), want 20005"
    [ "$(query_offset "$t" 0)" = 0 ] || fail "offset for time 0 is not 0"
    local o ts want got last_ts
    while read -r o ts; do
        # First offset whose timestamp is >= ts.
        want="$(awk -v t="$ts" '$2 >= t {print $1; exit}' "$TMP/ts.txt")"
        got="$(query_offset "$t" "$ts")"
        [ "$got" = "$want" ] || fail "offset for time $ts is '$got', want $want (count, timestamp: $(awk '{print $2}' "$TMP/ts.txt" | uniq -c | tr -s ' \n' ' '))" || return 1
        last_ts="$ts"
    done < <(sort -n -k2 -u "$TMP/ts.txt")
    got="$(query_offset "$t" $((last_ts + 1)))"
    [ "$got" = -1 ] || [ "$got" = 20005 ] || fail "offset for a time past the last record is '$got', want -1 (none)"
}

ALL=(metadata produce_consume_10k headers_nulls compression acks offsets_for_times)
command -v kcat >/dev/null || { echo "FAIL kcat: kcat not installed (run scripts/install-test-deps.sh)"; exit 1; }
failed=()
for s in "${ALL[@]}"; do
    if [ ${#WANTED[@]} -gt 0 ] && [[ ! " ${WANTED[*]} " =~ " $s " ]]; then
        continue
    fi
    start_ms=$(($(date +%s%N) / 1000000))
    # Not inside an `if`: bash ignores set -e in conditions.
    (set -e; "sc_$s")
    rc=$?
    secs="$(awk -v ms=$(($(date +%s%N) / 1000000 - start_ms)) 'BEGIN {printf "%.1f", ms / 1000}')"
    if [ "$rc" = 0 ]; then
        echo "PASS kcat $s (${secs}s)"
    else
        echo "FAIL kcat $s (${secs}s)"
        failed+=("$s")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "kcat: failed scenarios: ${failed[*]}"
    exit 1
fi
