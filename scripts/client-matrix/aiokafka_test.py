#!/usr/bin/env python3
"""Client-matrix scenarios for aiokafka 0.12 against a running Sluice broker.

Usage: aiokafka_test.py BOOTSTRAP [scenario...]

Every scenario uses fresh topics, asserts what it reads back, and prints PASS/FAIL on its own line;
the exit status is 1 if any scenario failed. Consumers use manual assignment only (group_id=None).
MATRIX_DEBUG=1 turns on aiokafka's debug log.
"""

import asyncio
import os
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from matrix import BOOT, SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC, SOURCE_STATIC_BROKER, Matrix, check

WAIT_S = 30
M = Matrix("aiokafka", "aio", timeout_s=4 * WAIT_S)
scenario = M.scenario
fresh = M.fresh


async def admin():
    adm = AIOKafkaAdminClient(bootstrap_servers=BOOT, client_id="matrix-aio-admin", request_timeout_ms=15000)
    await adm.start()
    return adm


async def create(name, partitions=1, configs=None, adm=None):
    own = adm is None
    adm = adm or await admin()
    try:
        resp = await adm.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
        errs = [tuple(e[:2]) for e in resp.topic_errors]
        # Apache Kafka may answer CreateTopics before its metadata (and DescribeConfigs) knows the
        # topic; Sluice answers after. Wait until it is listed, within WAIT_S.
        deadline = time.monotonic() + WAIT_S
        while errs == [(name, 0)] and name not in await adm.list_topics():
            check(time.monotonic() < deadline, "created topic %s not listed %ss after create" % (name, WAIT_S))
            await asyncio.sleep(0.1)
        return errs
    finally:
        if own:
            await adm.close()


async def create_ok(name, partitions=1, configs=None):
    errs = await create(name, partitions, configs)
    check(errs == [(name, 0)], "create_topics(%s): %r" % (name, errs))


async def producer(**kw):
    kw.setdefault("linger_ms", 5)
    kw.setdefault("request_timeout_ms", 15000)
    p = AIOKafkaProducer(bootstrap_servers=BOOT, client_id="matrix-aio-producer", **kw)
    await p.start()
    return p


async def consumer(**kw):
    c = AIOKafkaConsumer(
        bootstrap_servers=BOOT,
        client_id="matrix-aio-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset=kw.pop("auto_offset_reset", "earliest"),
        request_timeout_ms=20000,
        **kw
    )
    await c.start()
    return c


async def read_n(cons, tps, n, seek_beginning=True):
    cons.assign(tps)
    if seek_beginning:
        await cons.seek_to_beginning(*tps)
    out = []
    deadline = time.monotonic() + WAIT_S
    while len(out) < n and time.monotonic() < deadline:
        for recs in (await cons.getmany(timeout_ms=500)).values():
            out.extend(recs)
    return out


async def send_all(prod, topic, records):
    futures = [await prod.send(topic, **r) for r in records]
    return await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)


async def describe_topic(adm, name):
    topics = [t for t in await adm.describe_topics([name]) if t["topic"] == name]
    check(len(topics) == 1, "describe_topics(%s) returned %r" % (name, topics))
    return topics[0]


async def topic_configs(adm, name):
    out = {}
    for resp in await adm.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)]):
        for res in resp.to_object()["resources"]:
            check(res["error_code"] == 0, "describe_configs error %r" % (res,))
            for e in res["config_entries"]:
                out[e["config_names"]] = (e["config_value"], e.get("config_source"))
    return out


async def alter_error_codes(adm, name, configs):
    out = []
    for resp in await adm.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)]):
        out.extend((r["error_code"], r["error_message"]) for r in resp.to_object()["resources"])
    return out


@scenario
async def admin_topics():
    adm = await admin()
    try:
        name = fresh("admin")
        check(await create(name, 1, {"retention.ms": "3600000"}, adm) == [(name, 0)], "create failed")
        check(name in await adm.list_topics(), "created topic missing from list_topics")
        t = await describe_topic(adm, name)
        check(t["error_code"] == 0 and len(t["partitions"]) == 1, "describe after create: %r" % (t,))
        errs = await create(name, 1, None, adm)
        check(errs == [(name, 36)], "re-create existing topic: %r, want TOPIC_ALREADY_EXISTS (36)" % errs)
        await adm.create_partitions({name: NewPartitions(total_count=3)})
        deadline = time.monotonic() + WAIT_S  # as for create: Apache Kafka may answer first
        while True:
            t = await describe_topic(adm, name)
            parts = sorted(p["partition"] for p in t["partitions"])
            if parts == [0, 1, 2] or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        check(parts == [0, 1, 2], "partitions after create_partitions(3): %r" % parts)
        resp = await adm.delete_topics([name])
        errs = [tuple(e[:2]) for e in resp.topic_error_codes]
        check(errs == [(name, 0)], "delete_topics: %r" % errs)
        deadline = time.monotonic() + WAIT_S
        while name in await adm.list_topics():
            check(time.monotonic() < deadline, "topic still listed %ss after delete" % WAIT_S)
            await asyncio.sleep(0.1)
    finally:
        await adm.close()


@scenario
async def produce_consume_10k():
    n, partitions = 10000, 3
    name = fresh("bulk")
    await create_ok(name, partitions)
    prod = await producer(acks="all")
    records = [{"key": b"key-%d" % (i % 97), "value": b"value-%d" % i} for i in range(n)]
    try:
        metas = await send_all(prod, name, records)
    finally:
        await prod.stop()
    key_partition, per_partition = {}, {}
    for r, m in zip(records, metas):
        check(key_partition.setdefault(r["key"], m.partition) == m.partition, "key %r on two partitions" % r["key"])
        per_partition.setdefault(m.partition, []).append((m.offset, r))
    check(len(per_partition) == partitions, "records landed on %d partitions" % len(per_partition))
    for p, lst in per_partition.items():
        check([o for o, _ in lst] == list(range(len(lst))), "partition %d produce offsets not 0..n-1" % p)
    cons = await consumer()
    tps = [TopicPartition(name, p) for p in range(partitions)]
    try:
        got = await read_n(cons, tps, n)
        ends = await cons.end_offsets(tps)
    finally:
        await cons.stop()
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
async def idempotent_producer_10k():
    """enable_idempotence=True (InitProducerId, sequence numbers, acks=all): every keyed record
    lands exactly once, in send order per partition, read back by partition assignment."""
    n, partitions = 10000, 3
    name = fresh("idem")
    await create_ok(name, partitions)
    prod = await producer(enable_idempotence=True, acks="all")
    records = [{"key": b"key-%d" % (i % 101), "value": b"idem-%d" % i} for i in range(n)]
    try:
        metas = await send_all(prod, name, records)
        check(prod._txn_manager is not None and prod._txn_manager.has_pid(), "no producer id from InitProducerId")
    finally:
        await prod.stop()
    per_partition = {}
    for r, m in zip(records, metas):
        per_partition.setdefault(m.partition, []).append((m.offset, r))
    check(len(per_partition) == partitions, "records landed on %d partitions" % len(per_partition))
    for p, lst in per_partition.items():
        check([o for o, _ in lst] == list(range(len(lst))), "partition %d produce offsets not 0..n-1 in send order" % p)
    cons = await consumer()
    tps = [TopicPartition(name, p) for p in range(partitions)]
    try:
        got = await read_n(cons, tps, n)
        await asyncio.sleep(0.5)
        got.extend(rec for recs in (await cons.getmany(timeout_ms=500)).values() for rec in recs)
    finally:
        await cons.stop()
    values = [rec.value for rec in got]
    check(len(values) == n and len(set(values)) == n, "consumed %d records, %d distinct, want %d" % (len(values), len(set(values)), n))
    for p, lst in per_partition.items():
        recs = [rec for rec in got if rec.partition == p]
        check([(r.offset, r.key, r.value) for r in recs] == [(o, s["key"], s["value"]) for o, s in lst],
              "partition %d: records not exactly once in send order" % p)


@scenario
async def headers_nulls_timestamps():
    name = fresh("hdr")
    await create_ok(name, 1)
    ts = 1_600_000_000_000
    records = [
        {"key": None, "value": b"no-key", "headers": [("h1", b"x"), ("h2", b"")], "timestamp_ms": ts},
        {"key": b"tomb", "value": None, "headers": [], "timestamp_ms": ts + 1},
        {"key": None, "value": b"", "headers": [("dup", b"1"), ("dup", b"2")], "timestamp_ms": ts + 2},
        {"key": b"k", "value": b"v", "headers": [("bin", bytes(range(256)))], "timestamp_ms": ts - 1000},
    ]
    prod = await producer(acks=1)
    try:
        metas = await send_all(prod, name, [dict(r, partition=0) for r in records])
    finally:
        await prod.stop()
    check([m.offset for m in metas] == [0, 1, 2, 3], "offsets %r" % [m.offset for m in metas])
    cons = await consumer()
    try:
        got = await read_n(cons, [TopicPartition(name, 0)], len(records))
    finally:
        await cons.stop()
    check(len(got) == len(records), "consumed %d of %d" % (len(got), len(records)))
    for rec, sent in zip(got, records):
        want = (sent["key"], sent["value"], sent["headers"], sent["timestamp_ms"], 0)
        have = (rec.key, rec.value, [tuple(h) for h in rec.headers], rec.timestamp, rec.timestamp_type)
        check(want == have, "offset %d: sent %r, got %r" % (rec.offset, want, have))


@scenario
async def compression():
    for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
        name = fresh("codec-%s" % (codec or "none"))
        await create_ok(name, 1)
        prod = await producer(acks="all", compression_type=codec, linger_ms=20, max_batch_size=64 * 1024)
        records = [{"key": b"k%d" % i, "value": (b"compressible-%d-" % i) * 20, "partition": 0} for i in range(500)]
        try:
            metas = await send_all(prod, name, records)
        finally:
            await prod.stop()
        check([m.offset for m in metas] == list(range(500)), "%s: produce offsets" % codec)
        cons = await consumer()
        try:
            got = await read_n(cons, [TopicPartition(name, 0)], 500)
        finally:
            await cons.stop()
        check(len(got) == 500, "%s: consumed %d of 500" % (codec, len(got)))
        for rec, sent in zip(got, records):
            check((rec.key, rec.value) == (sent["key"], sent["value"]), "%s: mismatch at %d" % (codec, rec.offset))
        print("  codec %s ok" % codec, flush=True)


@scenario
async def acks_levels():
    for acks in [0, 1, "all"]:
        name = fresh("acks-%s" % acks)
        await create_ok(name, 1)
        prod = await producer(acks=acks)
        records = [{"value": b"a%s-%d" % (str(acks).encode(), i), "partition": 0} for i in range(100)]
        try:
            metas = await send_all(prod, name, records)
        finally:
            await prod.stop()
        if acks != 0:
            check([m.offset for m in metas] == list(range(100)), "acks=%s: offsets" % acks)
        cons = await consumer()
        try:
            got = await read_n(cons, [TopicPartition(name, 0)], 100)
        finally:
            await cons.stop()
        check([r.value for r in got] == [r["value"] for r in records], "acks=%s: consumed %d records" % (acks, len(got)))
        check([r.offset for r in got] == list(range(100)), "acks=%s: consumed offsets" % acks)


@scenario
async def message_size_limits():
    big_topic, small_topic = fresh("big"), fresh("small")
    await create_ok(big_topic, 1, {"max.message.bytes": "2000000"})
    await create_ok(small_topic, 1, {"max.message.bytes": "10000"})
    prod = await producer(acks="all", max_request_size=4_000_000)
    value = os.urandom(1 << 20)
    try:
        meta = await prod.send_and_wait(big_topic, value=value, partition=0)
        check(meta.offset == 0, "1 MiB record offset %r" % meta.offset)
        try:
            await prod.send_and_wait(small_topic, value=os.urandom(20000), partition=0)
            raise AssertionError("20000-byte record accepted by a topic with max.message.bytes=10000")
        except KafkaError as e:
            check(getattr(e, "errno", None) == 10, "expected MESSAGE_TOO_LARGE (10), got %r" % (e,))
    finally:
        await prod.stop()
    cons = await consumer(max_partition_fetch_bytes=3_000_000, fetch_max_bytes=3_000_000)
    try:
        got = await read_n(cons, [TopicPartition(big_topic, 0)], 1)
    finally:
        await cons.stop()
    check(len(got) == 1 and got[0].value == value, "1 MiB record not read back intact")


@scenario
async def list_offsets():
    name = fresh("offsets")
    await create_ok(name, 1)
    t0 = 1_700_000_000_000
    prod = await producer(acks="all")
    try:
        await send_all(prod, name, [{"value": b"%d" % i, "timestamp_ms": t0 + i * 1000, "partition": 0} for i in range(10)])
    finally:
        await prod.stop()
    tp = TopicPartition(name, 0)
    cons = await consumer()
    try:
        check((await cons.beginning_offsets([tp]))[tp] == 0, "earliest != 0")
        check((await cons.end_offsets([tp]))[tp] == 10, "latest != 10")
        cases = [(t0 - 5000, 0, t0), (t0, 0, t0), (t0 + 2500, 3, t0 + 3000), (t0 + 9000, 9, t0 + 9000)]
        for query, offset, ts in cases:
            r = (await cons.offsets_for_times({tp: query}))[tp]
            check(r is not None and (r.offset, r.timestamp) == (offset, ts), "offsets_for_times(%d) = %r" % (query, r))
        r = (await cons.offsets_for_times({tp: t0 + 10_000}))[tp]
        check(r is None, "offsets_for_times past the last record = %r, want None" % (r,))
    finally:
        await cons.stop()


@scenario
async def out_of_range_fetch():
    name = fresh("oor")
    await create_ok(name, 1)
    prod = await producer(acks="all")
    try:
        await send_all(prod, name, [{"value": b"r%d" % i, "partition": 0} for i in range(5)])
    finally:
        await prod.stop()
    tp = TopicPartition(name, 0)
    cons = await consumer(auto_offset_reset="earliest")
    try:
        cons.assign([tp])
        cons.seek(tp, 1000)
        got = await read_n(cons, [tp], 5, seek_beginning=False)
    finally:
        await cons.stop()
    check([r.offset for r in got] == list(range(5)), "after seek past end, read offsets %r" % [r.offset for r in got])


@scenario
async def configs():
    name = fresh("cfg")
    await create_ok(name, 1, {"retention.ms": "3600000"})
    adm = await admin()
    try:
        cfg = await topic_configs(adm, name)
        check("retention.ms" in cfg and "segment.bytes" in cfg, "configs listed: %r" % sorted(cfg))
        check(cfg["retention.ms"] == ("3600000", SOURCE_DYNAMIC_TOPIC), "retention.ms %r" % (cfg["retention.ms"],))
        check(cfg["segment.bytes"][1] in (SOURCE_STATIC_BROKER, SOURCE_DEFAULT), "segment.bytes %r" % (cfg["segment.bytes"],))
        errs = await alter_error_codes(adm, name, {"retention.ms": "7200000"})
        check([e for e, _ in errs] == [0], "alter retention.ms=7200000: %r" % errs)
        cfg = await topic_configs(adm, name)
        check(cfg["retention.ms"] == ("7200000", SOURCE_DYNAMIC_TOPIC), "after alter: %r" % (cfg["retention.ms"],))
        errs = await alter_error_codes(adm, name, {"retention.ms": "soon"})
        check([e for e, _ in errs] == [40], "alter retention.ms=soon: %r, want INVALID_CONFIG (40)" % errs)
        cfg = await topic_configs(adm, name)
        check(cfg["retention.ms"][0] == "7200000", "rejected alter changed the value: %r" % (cfg["retention.ms"],))
    finally:
        await adm.close()



@scenario
async def transactions():
    """A transactional producer (transactional_id): a committed and an aborted transaction over
    three partitions; read_committed reads only the committed records, read_uncommitted all."""
    name = fresh("txn")
    await create_ok(name, 3)
    prod = await producer(transactional_id=fresh("aio-tx"), enable_idempotence=True)
    try:
        async with prod.transaction():
            await send_all(prod, name, [{"value": b"c%d" % i, "partition": i % 3} for i in range(30)])
        await prod.begin_transaction()
        await send_all(prod, name, [{"value": b"a%d" % i, "partition": i % 3} for i in range(20)])
        await prod.abort_transaction()
    finally:
        await prod.stop()
    tps = [TopicPartition(name, p) for p in range(3)]
    rc = await consumer(isolation_level="read_committed")
    try:
        got = sorted(r.value for r in await read_n(rc, tps, 30))
    finally:
        await rc.stop()
    check(got == sorted(b"c%d" % i for i in range(30)), "read_committed read %d: %r" % (len(got), got[:5]))
    ru = await consumer(isolation_level="read_uncommitted")
    try:
        n = len(await read_n(ru, tps, 50))
    finally:
        await ru.stop()
    check(n == 50, "read_uncommitted read %d of 50" % n)

if __name__ == "__main__":
    M.run()
