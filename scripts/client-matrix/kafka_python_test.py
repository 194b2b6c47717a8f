#!/usr/bin/env python3
"""Client-matrix scenarios for kafka-python 2.2 against a running Sluice broker.

Usage: kafka_python_test.py BOOTSTRAP [scenario...]

Every scenario uses fresh topics, asserts what it reads back, and prints PASS/FAIL on its own line;
the exit status is 1 if any scenario failed. Consumers use manual assignment only (group_id=None):
no consumer-group APIs are exercised. MATRIX_DEBUG=1 turns on kafka-python's debug log.
"""

import os
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from matrix import BOOT, SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC, SOURCE_STATIC_BROKER, Matrix, check

WAIT_S = 30
M = Matrix("kafka-python", "kp", timeout_s=4 * WAIT_S)
scenario = M.scenario
fresh = M.fresh


def admin():
    return KafkaAdminClient(bootstrap_servers=BOOT, client_id="matrix-kp-admin", request_timeout_ms=15000)


def create(adm, name, partitions=1, configs=None):
    adm.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    # Apache Kafka may answer CreateTopics before its metadata (and DescribeConfigs) knows the
    # topic; Sluice answers after. Wait until it is listed, within WAIT_S.
    deadline = time.monotonic() + WAIT_S
    while name not in adm.list_topics():
        check(time.monotonic() < deadline, "created topic %s not listed %ss after create" % (name, WAIT_S))
        time.sleep(0.1)


def producer(**kw):
    kw.setdefault("linger_ms", 5)
    kw.setdefault("request_timeout_ms", 15000)
    return KafkaProducer(bootstrap_servers=BOOT, client_id="matrix-kp-producer", **kw)


def consumer(**kw):
    return KafkaConsumer(
        bootstrap_servers=BOOT,
        client_id="matrix-kp-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset=kw.pop("auto_offset_reset", "earliest"),
        request_timeout_ms=20000,
        **kw
    )


def read_n(cons, tps, n, seek_beginning=True):
    """Assigns `tps`, and polls until `n` records came or WAIT_S passed."""
    cons.assign(tps)
    if seek_beginning:
        cons.seek_to_beginning(*tps)
    out = []
    deadline = time.monotonic() + WAIT_S
    while len(out) < n and time.monotonic() < deadline:
        for recs in cons.poll(timeout_ms=500).values():
            out.extend(recs)
    return out


def send_all(prod, topic, records):
    """records: dicts of send() kwargs. Returns RecordMetadata in input order."""
    futures = [prod.send(topic, **r) for r in records]
    prod.flush(timeout=WAIT_S)
    return [f.get(timeout=WAIT_S) for f in futures]


def flush_acks0(prod):
    """Works around a kafka-python 2.2 client bug: KafkaClient.send() registers a connection for
    writing only while the request's future is pending, and an acks=0 future is done at once, so
    the Produce bytes stay queued in the connection until some later request (or are dropped by
    close()). Pushes them out with the connection's own method."""
    for conn in list(prod._sender._client._conns.values()):
        conn.send_pending_requests()


def describe_topic(adm, name):
    topics = [t for t in adm.describe_topics([name]) if t["topic"] == name]
    check(len(topics) == 1, "describe_topics(%s) returned %r" % (name, topics))
    return topics[0]


def topic_configs(adm, name):
    """{name: (value, source)} from DescribeConfigs for one topic."""
    responses = adm.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    out = {}
    for resp in responses:
        obj = resp.to_object()
        for res in obj["resources"]:
            check(res["error_code"] == 0, "describe_configs error %r" % (res,))
            for e in res["config_entries"]:
                out[e["config_names"]] = (e["config_value"], e.get("config_source"))
    return out


def alter_error_codes(adm, name, configs):
    resp = adm.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)])
    return [(r["error_code"], r["error_message"]) for r in resp.to_object()["resources"]]


@scenario
def admin_topics():
    adm = admin()
    try:
        name = fresh("admin")
        create(adm, name, 1, {"retention.ms": "3600000"})
        check(name in adm.list_topics(), "created topic missing from list_topics")
        t = describe_topic(adm, name)
        check(t["error_code"] == 0 and len(t["partitions"]) == 1, "describe after create: %r" % (t,))
        try:
            create(adm, name, 1)
            raise AssertionError("re-creating an existing topic succeeded")
        except TopicAlreadyExistsError:
            pass
        adm.create_partitions({name: NewPartitions(total_count=3)})
        deadline = time.monotonic() + WAIT_S  # as for create: Apache Kafka may answer first
        while True:
            t = describe_topic(adm, name)
            parts = sorted(p["partition"] for p in t["partitions"])
            if parts == [0, 1, 2] or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        check(parts == [0, 1, 2], "partitions after create_partitions(3): %r" % parts)
        adm.delete_topics([name])
        deadline = time.monotonic() + WAIT_S
        while name in adm.list_topics():
            check(time.monotonic() < deadline, "topic still listed %ss after delete" % WAIT_S)
            time.sleep(0.1)
    finally:
        adm.close()


@scenario
def produce_consume_10k():
    n, partitions = 10000, 3
    name = fresh("bulk")
    adm = admin()
    create(adm, name, partitions)
    adm.close()
    prod = producer(acks="all")
    records = [{"key": b"key-%d" % (i % 97), "value": b"value-%d" % i} for i in range(n)]
    metas = send_all(prod, name, records)
    prod.close()
    key_partition, per_partition = {}, {}
    for r, m in zip(records, metas):
        check(key_partition.setdefault(r["key"], m.partition) == m.partition, "key %r on two partitions" % r["key"])
        per_partition.setdefault(m.partition, []).append((m.offset, r))
    check(len(per_partition) == partitions, "records landed on %d partitions" % len(per_partition))
    for p, lst in per_partition.items():
        offsets = [o for o, _ in lst]
        check(offsets == list(range(len(lst))), "partition %d produce offsets not 0..n-1" % p)
    cons = consumer(max_partition_fetch_bytes=1 << 20)
    tps = [TopicPartition(name, p) for p in range(partitions)]
    got = read_n(cons, tps, n)
    ends = cons.end_offsets(tps)
    cons.close()
    check(len(got) == n, "consumed %d of %d" % (len(got), n))
    by_partition = {}
    for rec in got:
        by_partition.setdefault(rec.partition, []).append(rec)
    for p, lst in per_partition.items():
        recs = by_partition.get(p, [])
        check([r.offset for r in recs] == list(range(len(lst))), "partition %d consumed offsets not 0..n-1" % p)
        for rec, (_, sent) in zip(recs, lst):
            check((rec.key, rec.value) == (sent["key"], sent["value"]), "p%d@%d mismatch" % (p, rec.offset))
        check(ends[TopicPartition(name, p)] == len(lst), "end offset p%d %r != %d" % (p, ends, len(lst)))


@scenario
def idempotent_producer_10k():
    """enable_idempotence=True (InitProducerId, sequence numbers, acks=all): every keyed record
    lands exactly once, in send order per partition, read back by partition assignment."""
    n, partitions = 10000, 3
    name = fresh("idem")
    adm = admin()
    create(adm, name, partitions)
    adm.close()
    prod = producer(enable_idempotence=True, acks="all")
    check(prod._transaction_manager is not None, "producer is not idempotent")
    records = [{"key": b"key-%d" % (i % 101), "value": b"idem-%d" % i} for i in range(n)]
    try:
        metas = send_all(prod, name, records)
        pid = prod._transaction_manager.producer_id_and_epoch
        check(pid.producer_id >= 0 and pid.epoch >= 0, "no producer id from InitProducerId: %r" % (pid,))
    finally:
        prod.close()
    per_partition = {}
    for r, m in zip(records, metas):
        per_partition.setdefault(m.partition, []).append((m.offset, r))
    check(len(per_partition) == partitions, "records landed on %d partitions" % len(per_partition))
    for p, lst in per_partition.items():
        check([o for o, _ in lst] == list(range(len(lst))), "partition %d produce offsets not 0..n-1 in send order" % p)
    cons = consumer(max_partition_fetch_bytes=1 << 20)
    tps = [TopicPartition(name, p) for p in range(partitions)]
    got = read_n(cons, tps, n)
    got.extend(rec for recs in cons.poll(timeout_ms=500).values() for rec in recs)
    cons.close()
    values = [rec.value for rec in got]
    check(len(values) == n and len(set(values)) == n, "consumed %d records, %d distinct, want %d" % (len(values), len(set(values)), n))
    for p, lst in per_partition.items():
        recs = [rec for rec in got if rec.partition == p]
        check([(r.offset, r.key, r.value) for r in recs] == [(o, s["key"], s["value"]) for o, s in lst],
              "partition %d: records not exactly once in send order" % p)


@scenario
def headers_nulls_timestamps():
    name = fresh("hdr")
    adm = admin()
    create(adm, name, 1)
    adm.close()
    ts = 1_600_000_000_000
    records = [
        {"key": None, "value": b"no-key", "headers": [("h1", b"x"), ("h2", b"")], "timestamp_ms": ts},
        {"key": b"tomb", "value": None, "headers": [], "timestamp_ms": ts + 1},
        {"key": None, "value": b"", "headers": [("dup", b"1"), ("dup", b"2")], "timestamp_ms": ts + 2},
        {"key": b"k", "value": b"v", "headers": [("bin", bytes(range(256)))], "timestamp_ms": ts - 1000},
    ]
    prod = producer(acks=1)
    metas = send_all(prod, name, [dict(r, partition=0) for r in records])
    prod.close()
    check([m.offset for m in metas] == [0, 1, 2, 3], "offsets %r" % [m.offset for m in metas])
    cons = consumer()
    got = read_n(cons, [TopicPartition(name, 0)], len(records))
    cons.close()
    check(len(got) == len(records), "consumed %d of %d" % (len(got), len(records)))
    for rec, sent in zip(got, records):
        want = (sent["key"], sent["value"], sent["headers"], sent["timestamp_ms"], 0)
        have = (rec.key, rec.value, list(rec.headers), rec.timestamp, rec.timestamp_type)
        check(want == have, "offset %d: sent %r, got %r" % (rec.offset, want, have))


@scenario
def compression():
    for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
        name = fresh("codec-%s" % (codec or "none"))
        adm = admin()
        create(adm, name, 1)
        adm.close()
        prod = producer(acks="all", compression_type=codec, linger_ms=20, batch_size=64 * 1024)
        records = [{"key": b"k%d" % i, "value": (b"compressible-%d-" % i) * 20, "partition": 0} for i in range(500)]
        metas = send_all(prod, name, records)
        prod.close()
        check([m.offset for m in metas] == list(range(500)), "%s: produce offsets" % codec)
        cons = consumer()
        got = read_n(cons, [TopicPartition(name, 0)], 500)
        cons.close()
        check(len(got) == 500, "%s: consumed %d of 500" % (codec, len(got)))
        for rec, sent in zip(got, records):
            check((rec.key, rec.value) == (sent["key"], sent["value"]), "%s: mismatch at %d" % (codec, rec.offset))
        print("  codec %s ok" % codec, flush=True)


@scenario
def acks_levels():
    for acks in [0, 1, "all"]:
        name = fresh("acks-%s" % acks)
        adm = admin()
        create(adm, name, 1)
        adm.close()
        prod = producer(acks=acks)
        records = [{"value": b"a%s-%d" % (str(acks).encode(), i), "partition": 0} for i in range(100)]
        metas = send_all(prod, name, records)
        if acks == 0:
            flush_acks0(prod)
        prod.close()
        if acks != 0:
            check([m.offset for m in metas] == list(range(100)), "acks=%s: offsets" % acks)
        cons = consumer()
        got = read_n(cons, [TopicPartition(name, 0)], 100)
        cons.close()
        check([r.value for r in got] == [r["value"] for r in records], "acks=%s: consumed %d records" % (acks, len(got)))
        check([r.offset for r in got] == list(range(100)), "acks=%s: consumed offsets" % acks)


@scenario
def message_size_limits():
    adm = admin()
    big_topic, small_topic = fresh("big"), fresh("small")
    create(adm, big_topic, 1, {"max.message.bytes": "2000000"})
    create(adm, small_topic, 1, {"max.message.bytes": "10000"})
    adm.close()
    prod = producer(acks="all", max_request_size=4_000_000, buffer_memory=16 << 20, retries=0)
    value = os.urandom(1 << 20)
    meta = prod.send(big_topic, value=value, partition=0).get(timeout=WAIT_S)
    check(meta.offset == 0, "1 MiB record offset %r" % meta.offset)
    try:
        prod.send(small_topic, value=os.urandom(20000), partition=0).get(timeout=WAIT_S)
        raise AssertionError("20000-byte record accepted by a topic with max.message.bytes=10000")
    except KafkaError as e:
        check(getattr(e, "errno", None) == 10, "expected MESSAGE_TOO_LARGE (10), got %r" % (e,))
    prod.close()
    cons = consumer(max_partition_fetch_bytes=3_000_000, fetch_max_bytes=3_000_000)
    got = read_n(cons, [TopicPartition(big_topic, 0)], 1)
    cons.close()
    check(len(got) == 1 and got[0].value == value, "1 MiB record not read back intact")


@scenario
def list_offsets():
    name = fresh("offsets")
    adm = admin()
    create(adm, name, 1)
    adm.close()
    t0 = 1_700_000_000_000
    prod = producer(acks="all")
    send_all(prod, name, [{"value": b"%d" % i, "timestamp_ms": t0 + i * 1000, "partition": 0} for i in range(10)])
    prod.close()
    tp = TopicPartition(name, 0)
    cons = consumer()
    check(cons.beginning_offsets([tp])[tp] == 0, "earliest != 0")
    check(cons.end_offsets([tp])[tp] == 10, "latest != 10")
    cases = [(t0 - 5000, 0, t0), (t0, 0, t0), (t0 + 2500, 3, t0 + 3000), (t0 + 9000, 9, t0 + 9000)]
    for query, offset, ts in cases:
        r = cons.offsets_for_times({tp: query})[tp]
        check(r is not None and (r.offset, r.timestamp) == (offset, ts), "offsets_for_times(%d) = %r" % (query, r))
    r = cons.offsets_for_times({tp: t0 + 10_000})[tp]
    check(r is None, "offsets_for_times past the last record = %r, want None" % (r,))
    cons.close()


@scenario
def out_of_range_fetch():
    name = fresh("oor")
    adm = admin()
    create(adm, name, 1)
    adm.close()
    prod = producer(acks="all")
    send_all(prod, name, [{"value": b"r%d" % i, "partition": 0} for i in range(5)])
    prod.close()
    tp = TopicPartition(name, 0)
    cons = consumer(auto_offset_reset="earliest")
    cons.assign([tp])
    cons.seek(tp, 1000)
    got = read_n(cons, [tp], 5, seek_beginning=False)
    cons.close()
    check([r.offset for r in got] == list(range(5)), "after seek past end, read offsets %r" % [r.offset for r in got])


@scenario
def configs():
    name = fresh("cfg")
    adm = admin()
    try:
        create(adm, name, 1, {"retention.ms": "3600000"})
        cfg = topic_configs(adm, name)
        check("retention.ms" in cfg and "segment.bytes" in cfg, "configs listed: %r" % sorted(cfg))
        check(cfg["retention.ms"] == ("3600000", SOURCE_DYNAMIC_TOPIC), "retention.ms %r" % (cfg["retention.ms"],))
        check(cfg["segment.bytes"][1] in (SOURCE_STATIC_BROKER, SOURCE_DEFAULT), "segment.bytes %r" % (cfg["segment.bytes"],))
        errs = alter_error_codes(adm, name, {"retention.ms": "7200000"})
        check([e for e, _ in errs] == [0], "alter retention.ms=7200000: %r" % errs)
        cfg = topic_configs(adm, name)
        check(cfg["retention.ms"] == ("7200000", SOURCE_DYNAMIC_TOPIC), "after alter: %r" % (cfg["retention.ms"],))
        errs = alter_error_codes(adm, name, {"retention.ms": "soon"})
        check([e for e, _ in errs] == [40], "alter retention.ms=soon: %r, want INVALID_CONFIG (40)" % errs)
        cfg = topic_configs(adm, name)
        check(cfg["retention.ms"][0] == "7200000", "rejected alter changed the value: %r" % (cfg["retention.ms"],))
    finally:
        adm.close()


if __name__ == "__main__":
    M.run()
