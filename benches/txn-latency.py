#!/usr/bin/env python3
"""Transactions per second and per-transaction latency of one transactional producer.

Each transaction is shaped like a consume-transform-produce step: 10 records of 100 bytes to a
2-partition topic, send_offsets_to_transaction for a group, commit_transaction. Starts its own
single-node broker from BINARY on 127.0.0.1:19092 with a fresh data directory, warms up with 20
transactions, measures COUNT (default 300), stops the broker.

    .test-deps/venv/bin/python benches/txn-latency.py target/release/sluice [COUNT]

Needs confluent-kafka (scripts/install-test-deps.sh installs it into .test-deps/venv).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = "127.0.0.1:19092"


def transactions(n):
    p = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": "txn-latency", "linger.ms": 0})
    p.init_transactions(30)
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "txn-latency", "enable.auto.commit": False})
    meta = c.consumer_group_metadata()
    took = []
    start = time.monotonic()
    for i in range(n):
        t = time.monotonic()
        p.begin_transaction()
        for k in range(10):
            p.produce("txn-out", value=b"x" * 100, partition=k % 2)
        p.send_offsets_to_transaction([TopicPartition("txn-in", 0, i + 1)], meta, 30)
        p.commit_transaction(30)
        took.append(time.monotonic() - t)
    elapsed = time.monotonic() - start
    c.close()
    took.sort()
    return n / elapsed, took[len(took) // 2], took[int(len(took) * 0.99)]


def main():
    binary = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    data = tempfile.mkdtemp(prefix="txn-latency-")
    broker = subprocess.Popen(
        [binary, "--data-dir", data, "--listen", BOOTSTRAP],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        deadline = time.monotonic() + 30
        while True:
            try:
                futures = admin.create_topics([NewTopic("txn-out", 2, 1), NewTopic("txn-in", 1, 1)])
                for f in futures.values():
                    f.result(10)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        transactions(20)
        rate, p50, p99 = transactions(count)
        print(f"{count} transactions: {rate:.1f} txn/s, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    finally:
        broker.terminate()
        broker.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
