#!/usr/bin/env python3
"""Consumer-group scenarios for kafka-python 2.2 against a running Sluice broker.

Usage: kafka_python_groups.py BOOTSTRAP [scenario...]

Exercises the group coordinator: FindCoordinator, Join/Sync/Heartbeat/LeaveGroup with
subscribe(), OffsetCommit/OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, and consumer
lag (committed offsets against end offsets). Every scenario uses fresh topics and groups, prints
PASS/FAIL on its own line, and the exit status is 1 if any failed. Every wait has a deadline.
MATRIX_DEBUG=1 turns on kafka-python's debug log.
"""

import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from matrix import BOOT, Matrix, check

WAIT_S = 60
M = Matrix("kafka-python-groups", "kpg", timeout_s=4 * WAIT_S)
scenario = M.scenario
fresh = M.fresh


def admin():
    return KafkaAdminClient(bootstrap_servers=BOOT, client_id="matrix-kpg-admin", request_timeout_ms=15000)


def produce(topic, partitions, per_partition):
    p = KafkaProducer(bootstrap_servers=BOOT, client_id="matrix-kpg-producer", linger_ms=5)
    for part in range(partitions):
        for i in range(per_partition):
            p.send(topic, value=("p%d-%d" % (part, i)).encode(), partition=part)
    p.flush(timeout=30)
    p.close()


def group_consumer(group, **kw):
    return KafkaConsumer(
        bootstrap_servers=BOOT,
        client_id="matrix-kpg-consumer",
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        request_timeout_ms=20000,
        **kw
    )


class Member(threading.Thread):
    """Polls a subscribed consumer in its own thread, recording what it read."""

    def __init__(self, group, topic):
        super().__init__(daemon=True)
        self.consumer = group_consumer(group)
        self.consumer.subscribe([topic])
        self.seen = set()
        self.stop = threading.Event()
        # Commit what was read while every member is still in the group (`committed` is set
        # once done), so no LeaveGroup rebalance can revoke partitions before the commit.
        self.commit_now = threading.Event()
        self.committed = threading.Event()
        self.error = None
        self.lock = threading.Lock()
        self._assigned = []
        # Position per assigned partition after the last poll.
        self.positions = {}

    def run(self):
        try:
            while not self.stop.is_set():
                if self.commit_now.is_set() and not self.committed.is_set():
                    self.consumer.commit()  # everything this member consumed, synchronously
                    self.committed.set()
                    continue
                if self.committed.is_set():
                    time.sleep(0.05)  # stay in the group (heartbeats run in the background)
                    continue
                for tp, recs in self.consumer.poll(timeout_ms=200).items():
                    with self.lock:
                        for r in recs:
                            self.seen.add((tp.partition, r.offset))
                assigned = self.consumer.assignment()
                positions = {tp.partition: self.consumer.position(tp) for tp in assigned}
                with self.lock:
                    self._assigned = sorted(tp.partition for tp in assigned)
                    self.positions = positions
            if not self.committed.is_set():
                self.consumer.commit()
        except Exception as e:  # reported by the scenario
            self.error = e
        finally:
            self.consumer.close()

    def assigned(self):
        with self.lock:
            return list(self._assigned)


def wait_for(cond, what):
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for: %s" % what)
        time.sleep(0.1)


@scenario
def group_shares_partitions_commits_and_resumes():
    topic, group = fresh("share"), fresh("g")
    adm = admin()
    adm.create_topics([NewTopic(topic, 4, 1)])
    produce(topic, 4, 10)
    a, b = Member(group, topic), Member(group, topic)
    a.start()
    b.start()
    wait_for(lambda: sorted(a.assigned() + b.assigned()) == [0, 1, 2, 3] and a.assigned() and b.assigned(),
             "4 partitions split over 2 members")
    def read_all():
        # Every record read, and each member at the end of each partition it now owns (one
        # member may have read everything before the other joined; the newcomer's partitions
        # count only once it has caught up, or it would commit nothing for them).
        with a.lock, b.lock:
            at_end = sorted(list(a.positions.items()) + list(b.positions.items()))
            return len(a.seen | b.seen) == 40 and at_end == [(p, 10) for p in range(4)]

    wait_for(read_all, "all 40 records read, each member at the end of its partitions")
    for m in (a, b):
        m.commit_now.set()
    wait_for(lambda: a.committed.is_set() and b.committed.is_set(), "both members committed")
    for m in (a, b):
        m.stop.set()
    for m in (a, b):
        m.join(timeout=WAIT_S)
        check(m.error is None, "member failed: %r" % m.error)
    # Consumer lag = end offset - committed offset: 0 everywhere.
    tps = [TopicPartition(topic, p) for p in range(4)]
    committed = adm.list_consumer_group_offsets(group)
    probe = group_consumer(None)
    ends = probe.end_offsets(tps)
    for tp in tps:
        check(committed[tp].offset == ends[tp] == 10, "partition %d: committed %r, end %r" % (tp.partition, committed.get(tp), ends[tp]))
    probe.close()
    # The group restarted resumes after the committed offsets: nothing is read again.
    produce(topic, 4, 1)
    c = Member(group, topic)
    c.start()
    def read_new():
        with c.lock:
            return len(c.seen) == 4

    wait_for(read_new, "the 4 new records")
    c.stop.set()
    c.join(timeout=WAIT_S)
    check(all(off == 10 for _, off in c.seen), "resumed at committed offsets: %r" % sorted(c.seen))
    adm.close()


@scenario
def describe_list_and_delete_groups():
    topic, group = fresh("desc"), fresh("g")
    adm = admin()
    adm.create_topics([NewTopic(topic, 2, 1)])
    m = Member(group, topic)
    m.start()
    wait_for(lambda: m.assigned() == [0, 1], "the member owns both partitions")

    def described():
        d = adm.describe_consumer_groups([group])[0]
        return d.state == "Stable" and len(d.members) == 1 and d

    wait_for(described, "group described as Stable with 1 member")
    d = described()
    check(d.protocol_type == "consumer", "protocol type %r" % d.protocol_type)
    check(d.protocol in ("range", "roundrobin", "sticky"), "protocol %r" % d.protocol)
    assignment = d.members[0].member_assignment
    check(assignment is not None and sorted(p for _, ps in assignment.assignment for p in ps) == [0, 1],
          "assignment %r" % (assignment,))
    listed = [g[0] for g in adm.list_consumer_groups()]
    check(group in listed, "%s not in %r" % (group, listed))
    m.stop.set()
    m.join(timeout=WAIT_S)
    # Empty now: offsets committed by a simple consumer, then the group deleted with them.
    simple = group_consumer(group)
    simple.commit({TopicPartition(topic, 0): OffsetAndMetadata(5, "meta", -1)})
    check(adm.list_consumer_group_offsets(group)[TopicPartition(topic, 0)].offset == 5, "simple commit")
    simple.close()
    wait_for(lambda: adm.describe_consumer_groups([group])[0].state == "Empty", "group Empty")
    adm.delete_consumer_groups([group])
    left = adm.list_consumer_group_offsets(group)
    check(all(v.offset == -1 for v in left.values()), "offsets after delete: %r" % left)
    adm.close()


if __name__ == "__main__":
    M.run()
