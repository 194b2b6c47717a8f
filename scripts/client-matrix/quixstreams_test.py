#!/usr/bin/env python3
"""Client-matrix scenarios for Quix Streams 3 (a Python stream processor on confluent-kafka /
librdkafka) against a running broker.

Usage: quixstreams_test.py BOOTSTRAP [scenario...]

- word_count_with_state_across_a_restart: sentences are split into words, regrouped by word
  (a repartition topic), counted in a state store (a changelog topic, compacted) and written to an
  output topic. The application stops after part of the input and a new one, with an empty state
  directory, restores the store from the changelog and finishes: the last count of every word
  must be exact.
- windowed_count: a tumbling one-second window per word over the records' own timestamps; every
  closed window's count must be exact.

Quix Streams creates its internal topics itself (CreateTopics with `cleanup.policy=compact` for
changelogs) and commits offsets in a consumer group. MATRIX_DEBUG=1 turns on its logs.
"""

import collections
import json
import logging
import os
import shutil
import tempfile
import time
import warnings

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

# A dependency of Quix Streams (authlib) warns about its own httpx integration on import, after
# setting its warnings to "always" when its `deprecate` module loads: load that first, then
# ignore the one warning.
try:
    import authlib.deprecate  # noqa: F401
except ImportError:
    pass
warnings.filterwarnings("ignore", message="The httpx module is deprecated")
from quixstreams import Application  # noqa: E402

from matrix import BOOT, Matrix, check

WAIT_S = 60
M = Matrix("quixstreams", "qx", timeout_s=4 * WAIT_S)
scenario = M.scenario
fresh = M.fresh

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]


def app(group, state_dir):
    return Application(
        broker_address=BOOT,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        commit_interval=1.0,
        loglevel="DEBUG" if os.environ.get("MATRIX_DEBUG") else "WARNING",
    )


def produce(topic, records):
    """records: (key, value, timestamp_ms or None); acks=all, in order."""
    p = KafkaProducer(bootstrap_servers=BOOT, acks="all", client_id="matrix-qx-producer")
    for key, value, ts in records:
        p.send(topic, key=key.encode(), value=json.dumps(value).encode(), timestamp_ms=ts)
    p.flush(30)
    p.close()


def read_all(topic):
    """Every record of `topic` from the start: a list of (key, value) in offset order per partition."""
    c = KafkaConsumer(bootstrap_servers=BOOT, group_id=None, enable_auto_commit=False,
                      client_id="matrix-qx-check")
    deadline = time.monotonic() + WAIT_S
    parts = None
    while not parts:
        check(time.monotonic() < deadline, "topic %s not found" % topic)
        parts = c.partitions_for_topic(topic)
        time.sleep(0.1 if not parts else 0)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    end = c.end_offsets(tps)
    out = []
    while any(c.position(tp) < end[tp] for tp in tps):
        check(time.monotonic() < deadline, "could not read %s to its end" % topic)
        for _tp, recs in c.poll(timeout_ms=500).items():
            out.extend((r.key.decode() if r.key is not None else None, json.loads(r.value)) for r in recs)
    c.close()
    return out


def topic_configs(name):
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    adm = KafkaAdminClient(bootstrap_servers=BOOT, client_id="matrix-qx-admin")
    try:
        res = adm.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        return {c[0]: c[1] for c in res[0].resources[0][4]}
    finally:
        adm.close()


def list_topics():
    c = KafkaConsumer(bootstrap_servers=BOOT, group_id=None, client_id="matrix-qx-check")
    try:
        return c.topics()
    finally:
        c.close()


@scenario
def word_count_with_state_across_a_restart():
    src, out, group = fresh("sentences"), fresh("counts"), fresh("wc")
    sentences = []
    for i in range(200):
        sentences.append(" ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(1 + i % 4)))
    want = collections.Counter(w for s in sentences for w in s.split())
    produce(src, [("s%d" % i, {"text": s}, None) for i, s in enumerate(sentences)])
    total_words = sum(want.values())

    def build(a):
        sdf = a.dataframe(a.topic(src, value_deserializer="json"))
        sdf = sdf.apply(lambda v: [{"word": w} for w in v["text"].split()], expand=True)
        sdf = sdf.group_by(lambda v: v["word"], name="word")

        def count(v, state):
            n = state.get("n", 0) + 1
            state.set("n", n)
            return {"word": v["word"], "n": n}

        sdf = sdf.apply(count, stateful=True)
        sdf.to_topic(a.topic(out, value_serializer="json", key_serializer="str"))

    # Part of the input, then a graceful stop (commits the checkpoint); then a fresh application
    # with an empty state directory: the store comes back from its changelog topic.
    for outputs in (total_words // 3, total_words):
        state_dir = tempfile.mkdtemp(prefix="sluice-qx-")
        try:
            a = app(group, state_dir)
            build(a)
            done = len(read_all(out)) if outputs == total_words else 0
            a.run(count=outputs - done, timeout=WAIT_S)
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)

    records = read_all(out)
    last = {}
    for key, v in records:
        check(key == v["word"], "output key %r for word %r" % (key, v["word"]))
        check(v["n"] > last.get(key, 0), "count of %r went from %s to %s" % (key, last.get(key), v["n"]))
        last[key] = v["n"]
    check(last == dict(want), "final counts %s, want %s" % (last, dict(want)))
    check(len(records) == total_words, "%d outputs for %d words (a word counted twice or not at all)"
          % (len(records), total_words))
    changelogs = [t for t in list_topics() if t.startswith("changelog__") and group in t]
    check(changelogs, "no changelog topic for group %s" % group)
    for t in changelogs:
        policy = topic_configs(t).get("cleanup.policy")
        check(policy == "compact", "changelog %s has cleanup.policy=%r" % (t, policy))
    repartition = [t for t in list_topics() if t.startswith("repartition__") and group in t]
    check(repartition, "no repartition topic for group %s" % group)


@scenario
def windowed_count():
    src, out, group = fresh("events"), fresh("windows"), fresh("win")
    base = (int(time.time() * 1000) // 1000) * 1000 - 60_000
    records, want = [], collections.Counter()
    for i in range(300):
        word = WORDS[i % len(WORDS)]
        ts = base + (i * 37) % 5000  # five one-second windows, out of order within the stream
        records.append((word, {"word": word}, ts))
    records.sort(key=lambda r: r[2])  # in time order: no record arrives after its window closed
    for word, _v, ts in records:
        want[(word, ts - ts % 1000)] += 1
    # One record per word far later closes every window of that word.
    records += [(w, {"word": w}, base + 60_000) for w in WORDS]
    produce(src, records)

    state_dir = tempfile.mkdtemp(prefix="sluice-qx-")
    try:
        a = app(group, state_dir)
        sdf = a.dataframe(a.topic(src, value_deserializer="json", key_deserializer="str"))
        sdf = sdf.tumbling_window(duration_ms=1000, grace_ms=0).count().final()
        sdf.to_topic(a.topic(out, value_serializer="json", key_serializer="str"))
        a.run(count=len(want), timeout=WAIT_S)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)

    got = {(k, v["start"]): v["value"] for k, v in read_all(out)}
    check(got == dict(want), "windows %s, want %s" % (sorted(got.items())[:10], sorted(want.items())[:10]))


if __name__ == "__main__":
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    M.run()
