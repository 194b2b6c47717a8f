#!/usr/bin/env python3
"""Consumer-group scenarios for aiokafka 0.12 against a running Sluice broker.

Usage: aiokafka_groups.py BOOTSTRAP [scenario...]

Exercises the group coordinator through subscribe(): FindCoordinator, Join/Sync/Heartbeat/
LeaveGroup, OffsetCommit/OffsetFetch, and the admin side (DescribeGroups, ListGroups,
OffsetFetch, DeleteGroups). Every scenario uses fresh topics and groups, prints PASS/FAIL on its
own line, and the exit status is 1 if any failed. Every wait has a deadline.
MATRIX_DEBUG=1 turns on aiokafka's debug log.
"""

import asyncio
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.protocol.admin import DeleteGroupsRequest

from matrix import BOOT, Matrix, check

WAIT_S = 30
M = Matrix("aiokafka-groups", "aiog", timeout_s=4 * WAIT_S)
scenario = M.scenario
fresh = M.fresh


async def admin():
    adm = AIOKafkaAdminClient(bootstrap_servers=BOOT, client_id="matrix-aiog-admin", request_timeout_ms=15000)
    await adm.start()
    return adm


async def create_ok(adm, name, partitions):
    resp = await adm.create_topics([NewTopic(name, partitions, 1)])
    errs = [tuple(e[:2]) for e in resp.topic_errors]
    check(errs == [(name, 0)], "create_topics(%s): %r" % (name, errs))


async def produce(topic, partitions, per_partition, first=0):
    """per_partition records on each partition, values 'p<part>-<i>' for i from `first`."""
    p = AIOKafkaProducer(bootstrap_servers=BOOT, client_id="matrix-aiog-producer", linger_ms=5, acks="all")
    await p.start()
    try:
        futs = [
            await p.send(topic, value=("p%d-%d" % (part, i)).encode(), partition=part)
            for part in range(partitions)
            for i in range(first, first + per_partition)
        ]
        await asyncio.wait_for(asyncio.gather(*futs), WAIT_S)
    finally:
        await p.stop()


def group_consumer(group, **kw):
    return AIOKafkaConsumer(
        bootstrap_servers=BOOT,
        client_id="matrix-aiog-consumer",
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        request_timeout_ms=20000,
        **kw
    )


async def wait_for(cond, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for: %s" % (timeout, what))
        await asyncio.sleep(0.1)


class Member:
    """A subscribed consumer polled by its own task; commits after processing each batch
    (at-least-once), so a clean stop leaves everything it read committed."""

    def __init__(self, group, topic, name):
        self.name = name
        self.consumer = group_consumer(group)
        self.topic = topic
        self.seen = []  # (partition, offset, value)
        self.error = None
        self._stop = asyncio.Event()
        self.task = None

    async def start(self):
        await self.consumer.start()
        self.consumer.subscribe([self.topic])
        self.task = asyncio.ensure_future(self._run())

    async def _run(self):
        try:
            while not self._stop.is_set():
                batch = await self.consumer.getmany(timeout_ms=200)
                if not batch:
                    continue
                for tp, recs in batch.items():
                    for r in recs:
                        self.seen.append((tp.partition, r.offset, r.value))
                await self.consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
        except Exception as e:  # reported by the scenario
            self.error = e

    def assigned(self):
        return sorted(tp.partition for tp in self.consumer.assignment())

    def member_id(self):
        return self.consumer._coordinator.member_id

    async def stop(self):
        self._stop.set()
        if self.task:
            await asyncio.wait_for(self.task, WAIT_S)
        await self.consumer.stop()  # LeaveGroup
        check(self.error is None, "member %s failed: %r" % (self.name, self.error))


async def start_members(group, topic, n):
    members = [Member(group, topic, "m%d" % i) for i in range(n)]
    await asyncio.gather(*(m.start() for m in members))
    return members


async def wait_split(members, partitions, what):
    """Waits until `members` own disjoint, non-empty partition sets covering 0..partitions-1, with
    counts differing by at most one (what range and round-robin both give)."""

    def split():
        owned = [m.assigned() for m in members]
        flat = sorted(p for o in owned for p in o)
        sizes = [len(o) for o in owned]
        return flat == list(range(partitions)) and min(sizes) >= 1 and max(sizes) - min(sizes) <= 1 and owned

    return await wait_for(split, what)


def all_seen(members):
    return [s for m in members for s in m.seen]


def check_exactly_once(members, partitions, per_partition, what):
    seen = all_seen(members)
    counts = Counter((p, o) for p, o, _ in seen)
    dups = sorted(k for k, c in counts.items() if c > 1)
    want = {(p, o) for p in range(partitions) for o in range(per_partition)}
    missing = sorted(want - set(counts))
    extra = sorted(set(counts) - want)
    check(not dups and not missing and not extra,
          "%s: duplicates %r, missing %r, unexpected %r" % (what, dups[:10], missing[:10], extra[:10]))
    for p, o, v in seen:
        check(v == ("p%d-%d" % (p, o)).encode(), "p%d@%d holds %r" % (p, o, v))


@scenario
async def three_members_split_six_partitions():
    topic, group = fresh("split"), fresh("g")
    adm = await admin()
    members = []
    try:
        await create_ok(adm, topic, 6)
        members = await start_members(group, topic, 3)
        owned = await wait_split(members, 6, "6 partitions split over 3 members")
        check(all(len(o) == 2 for o in owned), "assignment %r, want 2 partitions each" % owned)
        await produce(topic, 6, 20)
        await wait_for(lambda: len(all_seen(members)) >= 120, "120 records consumed")
        await asyncio.sleep(0.5)  # room for any duplicate to show up
        check_exactly_once(members, 6, 20, "3 members")
        for m, parts in zip(members, owned):
            got = {p for p, _, _ in m.seen}
            check(got <= set(parts), "%s owns %r but read partitions %r" % (m.name, parts, sorted(got)))
    finally:
        for m in members:
            await m.stop()
        await adm.close()


@scenario
async def member_leaves_others_take_over():
    topic, group = fresh("leave"), fresh("g")
    adm = await admin()
    members = []
    try:
        await create_ok(adm, topic, 6)
        members = await start_members(group, topic, 3)
        owned = await wait_split(members, 6, "6 partitions split over 3 members")
        await produce(topic, 6, 10)
        await wait_for(lambda: len(all_seen(members)) >= 60, "first 60 records consumed")
        leaver = members.pop()
        left_parts = owned[-1]
        await leaver.stop()  # committed everything it read, then LeaveGroup
        owned = await wait_split(members, 6, "the 2 remaining members own all 6 partitions")
        took = [p for o in owned for p in o if p in left_parts]
        check(sorted(took) == sorted(left_parts), "leaver's partitions %r, now owned %r" % (left_parts, owned))
        await produce(topic, 6, 10, first=10)
        everyone = members + [leaver]
        await wait_for(lambda: len(all_seen(everyone)) >= 120, "all 120 records consumed")
        await asyncio.sleep(0.5)
        check_exactly_once(everyone, 6, 20, "after a member left")
        for m, parts in zip(members, owned):
            late = {p for p, o, _ in m.seen if o >= 10}
            check(late <= set(parts), "%s owns %r, read new records of %r" % (m.name, parts, sorted(late)))
    finally:
        for m in members:
            await m.stop()
        await adm.close()


@scenario
async def commit_stop_restart_resumes():
    topic, group = fresh("resume"), fresh("g")
    adm = await admin()
    members = []
    try:
        await create_ok(adm, topic, 6)
        members = await start_members(group, topic, 3)
        await wait_split(members, 6, "6 partitions split over 3 members")
        await produce(topic, 6, 10)
        await wait_for(lambda: len(all_seen(members)) >= 60, "60 records consumed")
        for m in members:
            await m.stop()
        check_exactly_once(members, 6, 10, "first run")
        members = []
        committed = await adm.list_consumer_group_offsets(group)
        offs = {tp.partition: om.offset for tp, om in committed.items() if tp.topic == topic}
        check(offs == {p: 10 for p in range(6)}, "committed offsets after stop: %r" % offs)
        await produce(topic, 6, 3, first=10)
        members = await start_members(group, topic, 3)
        await wait_split(members, 6, "restarted group split")
        await wait_for(lambda: len(all_seen(members)) >= 18, "the 18 new records")
        await asyncio.sleep(0.5)
        got = sorted((p, o) for p, o, _ in all_seen(members))
        want = sorted((p, o) for p in range(6) for o in range(10, 13))
        check(got == want, "restarted group read %r, want exactly offsets 10..12 of each partition" % got)
    finally:
        for m in members:
            await m.stop()
        await adm.close()


async def crash_and_restart(commit_before_processing):
    """One member, one partition: N records processed and committed; then M records taken, where
    at-least-once processes them but "crashes" before committing, and at-most-once commits them
    first and crashes before processing. A new member of the same group then reads to the end.
    Returns (offsets processed per run, committed offset at the crash)."""
    n, m, k = 10, 5, 5
    topic, group = fresh("crash"), fresh("g")
    tp = TopicPartition(topic, 0)
    adm = await admin()
    try:
        await create_ok(adm, topic, 1)
        await produce(topic, 1, n + m + k)
        processed = [[], []]
        c = group_consumer(group)
        await c.start()
        try:
            c.subscribe([topic])
            taken = []
            deadline = time.monotonic() + WAIT_S
            while len(taken) < n + m and time.monotonic() < deadline:
                for recs in (await c.getmany(timeout_ms=200)).values():
                    taken.extend(recs)
            check(len(taken) >= n + m, "first run read only %d records" % len(taken))
            for r in taken[:n]:  # processed, then committed
                processed[0].append(r.offset)
                await c.commit({tp: r.offset + 1})
            if commit_before_processing:
                await c.commit({tp: taken[n + m - 1].offset + 1})
                # crash here: the M records are never processed
            else:
                for r in taken[n:n + m]:
                    processed[0].append(r.offset)
                # crash here: the M records are never committed
        finally:
            # stop() with enable_auto_commit=False commits nothing: what was committed stays.
            await c.stop()
        committed = (await adm.list_consumer_group_offsets(group)).get(tp)
        c = group_consumer(group)
        await c.start()
        try:
            c.subscribe([topic])
            deadline = time.monotonic() + WAIT_S
            while (not processed[1] or processed[1][-1] < n + m + k - 1) and time.monotonic() < deadline:
                for recs in (await c.getmany(timeout_ms=200)).values():
                    processed[1].extend(r.offset for r in recs)
            await c.commit()
        finally:
            await c.stop()
        return processed, committed.offset if committed else None
    finally:
        await adm.close()


@scenario
async def at_least_once_redelivers_uncommitted():
    (first, second), committed = await crash_and_restart(commit_before_processing=False)
    check(committed == 10, "committed offset at the crash %r, want 10" % committed)
    check(first == list(range(15)), "first run processed %r" % first)
    check(second == list(range(10, 20)), "restart read %r, want 10..19 (10..14 redelivered)" % second)


@scenario
async def at_most_once_does_not_redeliver():
    (first, second), committed = await crash_and_restart(commit_before_processing=True)
    check(committed == 15, "committed offset at the crash %r, want 15" % committed)
    check(first == list(range(10)), "first run processed %r" % first)
    check(second == list(range(15, 20)), "restart read %r, want 15..19 (10..14 not redelivered)" % second)


async def describe(adm, group):
    (resp,) = await adm.describe_consumer_groups([group])
    groups = resp.to_object()["groups"]
    check(len(groups) == 1, "describe_consumer_groups returned %r" % groups)
    return groups[0]


@scenario
async def describe_list_and_delete_groups():
    topic, group = fresh("desc"), fresh("g")
    adm = await admin()
    members = []
    try:
        await create_ok(adm, topic, 6)
        members = await start_members(group, topic, 3)
        await wait_split(members, 6, "6 partitions split over 3 members")
        await produce(topic, 6, 5)
        await wait_for(lambda: len(all_seen(members)) >= 30, "30 records consumed")

        async def stable():
            d = await describe(adm, group)
            return d["state"] == "Stable" and len(d["members"]) == 3 and d

        d = await wait_for(stable, "group described as Stable with 3 members")
        check(d["error_code"] == 0 and d["group"] == group, "describe: %r" % d)
        check(d["protocol_type"] == "consumer", "protocol_type %r" % d["protocol_type"])
        check(d["protocol"] in ("roundrobin", "range", "sticky"), "protocol %r" % d["protocol"])
        by_id = {m.member_id(): m for m in members}
        described_parts = []
        for dm in d["members"]:
            check(dm["member_id"] in by_id, "described member %r not one of %r" % (dm["member_id"], sorted(by_id)))
            check(dm["client_id"] == "matrix-aiog-consumer", "client_id %r" % dm["client_id"])
            a = ConsumerProtocolMemberAssignment.decode(dm["member_assignment"])
            parts = sorted(p for t, ps in a.assignment for p in ps if t == topic)
            check([t for t, _ in a.assignment] == [topic], "assignment topics %r" % (a.assignment,))
            check(parts == by_id[dm["member_id"]].assigned(),
                  "described assignment %r, the member owns %r" % (parts, by_id[dm["member_id"]].assigned()))
            described_parts.extend(parts)
        check(sorted(described_parts) == list(range(6)), "described assignments %r" % described_parts)
        listed = await adm.list_consumer_groups()
        check((group, "consumer") in [tuple(g[:2]) for g in listed], "%s not in %r" % (group, listed))

        for m in members:
            await m.stop()
        members = []
        d = await wait_for(lambda: describe(adm, group), "describe")
        check(d["state"] == "Empty" and d["members"] == [], "after all left: %r" % d)
        committed = await adm.list_consumer_group_offsets(group)
        offs = {tp.partition: om.offset for tp, om in committed.items() if tp.topic == topic}
        check(offs == {p: 5 for p in range(6)}, "committed offsets %r" % offs)

        node = await adm.find_coordinator(group)
        resp = await adm._send_request(DeleteGroupsRequest[1](groups_names=[group]), node)
        check([tuple(r) for r in resp.results] == [(group, 0)], "DeleteGroups: %r" % (resp,))
        left = await adm.list_consumer_group_offsets(group)
        check(all(v.offset == -1 for v in left.values()), "offsets after delete: %r" % left)
        left = await adm.list_consumer_group_offsets(group, partitions=[TopicPartition(topic, p) for p in range(6)])
        check(all(v.offset == -1 for v in left.values()), "offsets of named partitions after delete: %r" % left)
        listed = await adm.list_consumer_groups()
        check(group not in [g[0] for g in listed], "deleted group still listed: %r" % listed)
    finally:
        for m in members:
            await m.stop()
        await adm.close()


if __name__ == "__main__":
    M.run()
