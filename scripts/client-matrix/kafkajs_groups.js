#!/usr/bin/env node
// Consumer-group scenarios for KafkaJS 2 against a running Sluice broker.
//
// Usage: node kafkajs_groups.js BOOTSTRAP [scenario...]
//
// Exercises the group coordinator through KafkaJS consumers (FindCoordinator, Join/Sync/Heartbeat/
// LeaveGroup, OffsetCommit/OffsetFetch), the admin group APIs (describeGroups, listGroups,
// fetchOffsets, deleteGroups), and the idempotent producer read back through a group consumer
// (KafkaJS has no group-less consumer). Every scenario uses fresh topics and groups and prints
// PASS/FAIL; the exit status is 1 if any scenario failed. Every wait has a deadline.
// MATRIX_DEBUG=1 logs at debug.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const path = require('path');
const crypto = require('crypto');
const { Kafka, AssignerProtocol, Partitioners, logLevel } = require(
  process.env.KAFKAJS_PATH || path.join(__dirname, '..', '..', '.test-deps', 'node', 'node_modules', 'kafkajs'),
);

const BOOT = process.argv[2] || '127.0.0.1:9092';
const WAIT_MS = 30000;
const CLIENT_ID = 'matrix-kjsg';

const kafka = new Kafka({
  clientId: CLIENT_ID,
  brokers: [BOOT],
  logLevel: process.env.MATRIX_DEBUG ? logLevel.DEBUG : logLevel.NOTHING,
  connectionTimeout: 10000,
  requestTimeout: 20000,
  retry: { retries: 3 },
});

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}
function fresh(tag) {
  return `kjsg-${tag}-${crypto.randomBytes(5).toString('hex')}`;
}
const json = (v) => JSON.stringify(v);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);

async function waitFor(cond, what, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(100);
  }
}

async function withAdmin(fn) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}
async function createOk(topic, numPartitions) {
  const created = await withAdmin((a) => a.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: 15000,
  }));
  check(created === true, `createTopics(${topic}) returned ${created}`);
}
// per records on each partition, values `p<part>-<i>` for i from `first`.
async function produce(topic, partitions, per, first = 0) {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    const topicMessages = [{
      topic,
      messages: range(0, partitions).flatMap((p) => range(first, first + per).map((i) => ({ value: `p${p}-${i}`, partition: p }))),
    }];
    const res = await producer.sendBatch({ acks: -1, topicMessages });
    check(res.every((r) => r.errorCode === 0), `produce: ${json(res)}`);
  } finally {
    await producer.disconnect();
  }
}
// {partition: committed offset} of `group` on `topic` (admin OffsetFetch).
async function committed(group, topic) {
  const res = await withAdmin((a) => a.fetchOffsets({ groupId: group, topics: [topic] }));
  check(res.length === 1 && res[0].topic === topic, `fetchOffsets: ${json(res)}`);
  const out = {};
  for (const p of res[0].partitions) out[p.partition] = Number(p.offset);
  return out;
}

function groupConsumer(group) {
  return kafka.consumer({
    groupId: group,
    sessionTimeout: 6000,
    rebalanceTimeout: 10000,
    heartbeatInterval: 500,
    maxWaitTimeInMs: 500, // a disconnect waits for the fetch in flight
    allowAutoTopicCreation: false,
    retry: { retries: 3 },
  });
}

// A subscribed consumer that records what it reads and commits after processing each message
// (at-least-once), so a clean stop leaves everything it read committed.
class Member {
  constructor(group, topic, name) {
    this.name = name;
    this.topic = topic;
    this.consumer = groupConsumer(group);
    this.seen = []; // [partition, offset, value]
    this.assignment = [];
    this.memberId = null;
    this.crashed = null;
    this.consumer.on(this.consumer.events.GROUP_JOIN, (e) => {
      this.memberId = e.payload.memberId;
      this.assignment = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b);
    });
    this.consumer.on(this.consumer.events.CRASH, (e) => { this.crashed = e.payload.error; });
  }

  async start() {
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: [this.topic], fromBeginning: true });
    await this.consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        this.seen.push([partition, Number(message.offset), message.value.toString()]);
        await this.consumer.commitOffsets([{ topic, partition, offset: String(Number(message.offset) + 1) }]);
      },
    });
  }

  async stop() {
    await this.consumer.disconnect(); // LeaveGroup
    check(this.crashed === null, `member ${this.name} crashed: ${this.crashed}`);
  }
}

async function startMembers(group, topic, n) {
  const members = range(0, n).map((i) => new Member(group, topic, `m${i}`));
  await Promise.all(members.map((m) => m.start()));
  return members;
}
async function stopAll(members) {
  await Promise.all(members.map((m) => m.stop()));
}

// Waits until `members` own disjoint, non-empty partition sets covering 0..partitions-1 with
// sizes differing by at most one.
function waitSplit(members, partitions, what) {
  return waitFor(() => {
    const owned = members.map((m) => m.assignment);
    const flat = owned.flat().sort((a, b) => a - b);
    const sizes = owned.map((o) => o.length);
    return json(flat) === json(range(0, partitions)) && Math.min(...sizes) >= 1 &&
      Math.max(...sizes) - Math.min(...sizes) <= 1 && owned;
  }, what);
}
const allSeen = (members) => members.flatMap((m) => m.seen);

function checkExactlyOnce(members, partitions, per, what) {
  const counts = new Map();
  for (const [p, o, v] of allSeen(members)) {
    check(v === `p${p}-${o}`, `p${p}@${o} holds ${v}`);
    counts.set(`${p}@${o}`, (counts.get(`${p}@${o}`) || 0) + 1);
  }
  const dups = [...counts].filter(([, c]) => c > 1).map(([k]) => k);
  const want = new Set(range(0, partitions).flatMap((p) => range(0, per).map((o) => `${p}@${o}`)));
  const missing = [...want].filter((k) => !counts.has(k));
  const extra = [...counts.keys()].filter((k) => !want.has(k));
  check(!dups.length && !missing.length && !extra.length,
    `${what}: duplicates ${json(dups.slice(0, 10))}, missing ${json(missing.slice(0, 10))}, unexpected ${json(extra.slice(0, 10))}`);
}

// One consumer, one partition: N records processed and committed; then M more taken, where
// at-least-once processes them and "crashes" before committing, and at-most-once commits them first
// and crashes before processing. A new consumer of the group then reads to the end.
async function crashAndRestart(commitBeforeProcessing) {
  const [n, m, k] = [10, 5, 5];
  const topic = fresh('crash');
  const group = fresh('g');
  await createOk(topic, 1);
  await produce(topic, 1, n + m + k);
  const processed = [[], []];
  let c = groupConsumer(group);
  let taken = 0;
  await c.connect();
  try {
    await c.subscribe({ topics: [topic], fromBeginning: true });
    await c.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        const off = Number(message.offset);
        if (off >= n + m) return; // past the crash point: never handed to the application
        taken++;
        if (off < n) {
          processed[0].push(off);
          await c.commitOffsets([{ topic, partition, offset: String(off + 1) }]);
        } else if (commitBeforeProcessing) {
          if (off === n) await c.commitOffsets([{ topic, partition, offset: String(n + m) }]);
          // crash before processing: nothing recorded
        } else {
          processed[0].push(off); // processed, never committed
        }
      },
    });
    await waitFor(() => taken >= n + m, `first run took ${n + m} records`);
  } finally {
    await c.disconnect(); // autoCommit is off: commits nothing
  }
  const atCrash = (await committed(group, topic))[0];
  c = groupConsumer(group);
  await c.connect();
  try {
    await c.subscribe({ topics: [topic], fromBeginning: true });
    await c.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        processed[1].push(Number(message.offset));
        await c.commitOffsets([{ topic, partition, offset: String(Number(message.offset) + 1) }]);
      },
    });
    await waitFor(() => processed[1].includes(n + m + k - 1), 'restart read to the end');
    await sleep(300);
  } finally {
    await c.disconnect();
  }
  return { processed, atCrash };
}

const scenarios = {
  async three_members_split_six_partitions() {
    const topic = fresh('split');
    const group = fresh('g');
    await createOk(topic, 6);
    const members = await startMembers(group, topic, 3);
    try {
      const owned = await waitSplit(members, 6, '6 partitions split over 3 members');
      check(owned.every((o) => o.length === 2), `assignment ${json(owned)}, want 2 partitions each`);
      await produce(topic, 6, 20);
      await waitFor(() => allSeen(members).length >= 120, '120 records consumed');
      await sleep(500); // room for any duplicate to show up
      checkExactlyOnce(members, 6, 20, '3 members');
      members.forEach((m, i) => {
        const got = new Set(m.seen.map(([p]) => p));
        check([...got].every((p) => owned[i].includes(p)), `${m.name} owns ${json(owned[i])} but read ${json([...got])}`);
      });
    } finally {
      await stopAll(members);
    }
  },

  async member_leaves_others_take_over() {
    const topic = fresh('leave');
    const group = fresh('g');
    await createOk(topic, 6);
    const members = await startMembers(group, topic, 3);
    let leaver = null;
    try {
      let owned = await waitSplit(members, 6, '6 partitions split over 3 members');
      await produce(topic, 6, 10);
      await waitFor(() => allSeen(members).length >= 60, 'first 60 records consumed');
      leaver = members.pop();
      const leftParts = owned[owned.length - 1];
      await leaver.stop(); // committed everything it read, then LeaveGroup
      owned = await waitSplit(members, 6, 'the 2 remaining members own all 6 partitions');
      await produce(topic, 6, 10, 10);
      const everyone = [...members, leaver];
      await waitFor(() => allSeen(everyone).length >= 120, 'all 120 records consumed');
      await sleep(500);
      checkExactlyOnce(everyone, 6, 20, 'after a member left');
      const tookOver = new Set(members.flatMap((m) => m.seen.filter(([p, o]) => o >= 10 && leftParts.includes(p)).map(([p]) => p)));
      check(json([...tookOver].sort()) === json(leftParts), `leaver's partitions ${json(leftParts)}, new records read by others on ${json([...tookOver])}`);
    } finally {
      await stopAll(members);
    }
  },

  async commit_stop_restart_resumes() {
    const topic = fresh('resume');
    const group = fresh('g');
    await createOk(topic, 6);
    let members = await startMembers(group, topic, 3);
    try {
      await waitSplit(members, 6, '6 partitions split over 3 members');
      await produce(topic, 6, 10);
      await waitFor(() => allSeen(members).length >= 60, '60 records consumed');
      await stopAll(members);
      checkExactlyOnce(members, 6, 10, 'first run');
      members = [];
      const offs = await committed(group, topic);
      check(json(offs) === json({ 0: 10, 1: 10, 2: 10, 3: 10, 4: 10, 5: 10 }), `committed after stop: ${json(offs)}`);
      await produce(topic, 6, 3, 10);
      members = await startMembers(group, topic, 3);
      await waitSplit(members, 6, 'restarted group split');
      await waitFor(() => allSeen(members).length >= 18, 'the 18 new records');
      await sleep(500);
      const got = allSeen(members).map(([p, o]) => `${p}@${o}`).sort();
      const want = range(0, 6).flatMap((p) => range(10, 13).map((o) => `${p}@${o}`)).sort();
      check(json(got) === json(want), `restarted group read ${json(got)}, want offsets 10..12 of each partition`);
    } finally {
      await stopAll(members);
    }
  },

  async at_least_once_redelivers_uncommitted() {
    const { processed: [first, second], atCrash } = await crashAndRestart(false);
    check(atCrash === 10, `committed offset at the crash ${atCrash}, want 10`);
    check(json(first) === json(range(0, 15)), `first run processed ${json(first)}`);
    check(json(second) === json(range(10, 20)), `restart read ${json(second)}, want 10..19 (10..14 redelivered)`);
  },

  async at_most_once_does_not_redeliver() {
    const { processed: [first, second], atCrash } = await crashAndRestart(true);
    check(atCrash === 15, `committed offset at the crash ${atCrash}, want 15`);
    check(json(first) === json(range(0, 10)), `first run processed ${json(first)}`);
    check(json(second) === json(range(15, 20)), `restart read ${json(second)}, want 15..19 (10..14 not redelivered)`);
  },

  async describe_list_fetch_delete_groups() {
    const topic = fresh('desc');
    const group = fresh('g');
    await createOk(topic, 6);
    let members = await startMembers(group, topic, 3);
    try {
      await waitSplit(members, 6, '6 partitions split over 3 members');
      await produce(topic, 6, 5);
      await waitFor(() => allSeen(members).length >= 30, '30 records consumed');
      await withAdmin(async (admin) => {
        const d = await waitFor(async () => {
          const { groups } = await admin.describeGroups([group]);
          check(groups.length === 1, `describeGroups: ${json(groups)}`);
          return groups[0].state === 'Stable' && groups[0].members.length === 3 && groups[0];
        }, 'group described as Stable with 3 members');
        check(d.errorCode === 0 && d.groupId === group, `describe: ${json(d)}`);
        check(d.protocolType === 'consumer', `protocolType ${d.protocolType}`);
        check(d.protocol === 'RoundRobinAssigner', `protocol ${d.protocol}, want KafkaJS's RoundRobinAssigner`);
        const byId = new Map(members.map((m) => [m.memberId, m]));
        const parts = [];
        for (const dm of d.members) {
          const m = byId.get(dm.memberId);
          check(m, `described member ${dm.memberId} not one of ${json([...byId.keys()])}`);
          check(dm.clientId === CLIENT_ID, `clientId ${dm.clientId}`);
          const a = AssignerProtocol.MemberAssignment.decode(dm.memberAssignment);
          check(json(Object.keys(a.assignment)) === json([topic]), `assignment ${json(a)}`);
          const mine = a.assignment[topic].slice().sort((x, y) => x - y);
          check(json(mine) === json(m.assignment), `described assignment ${json(mine)}, member owns ${json(m.assignment)}`);
          const meta = AssignerProtocol.MemberMetadata.decode(dm.memberMetadata);
          check(json(meta.topics) === json([topic]), `member metadata ${json(meta)}`);
          parts.push(...mine);
        }
        check(json(parts.sort()) === json(range(0, 6)), `described assignments ${json(parts)}`);
        const { groups: listed } = await admin.listGroups();
        check(listed.some((g) => g.groupId === group && g.protocolType === 'consumer'), `${group} not in ${json(listed)}`);
        let err = null;
        try {
          await admin.deleteGroups([group]);
        } catch (e) {
          err = e;
        }
        const code = err && err.groups && err.groups[0] && err.groups[0].error && err.groups[0].error.type;
        check(code === 'NON_EMPTY_GROUP', `deleteGroups on a live group: ${err ? `${err.name} ${code}` : 'succeeded'}, want NON_EMPTY_GROUP`);
      });
      await stopAll(members);
      members = [];
      await withAdmin(async (admin) => {
        const { groups: [d] } = await admin.describeGroups([group]);
        check(d.state === 'Empty' && d.members.length === 0, `after all left: ${json(d)}`);
      });
      const offs = await committed(group, topic);
      check(json(offs) === json({ 0: 5, 1: 5, 2: 5, 3: 5, 4: 5, 5: 5 }), `committed offsets ${json(offs)}`);
      await withAdmin(async (admin) => {
        const res = await admin.deleteGroups([group]);
        check(json(res.map((r) => [r.groupId, r.errorCode])) === json([[group, 0]]), `deleteGroups: ${json(res)}`);
        const { groups: listed } = await admin.listGroups();
        check(!listed.some((g) => g.groupId === group), `deleted group still listed: ${json(listed)}`);
      });
      const left = await committed(group, topic);
      check(Object.values(left).every((o) => o === -1), `offsets after delete: ${json(left)}`);
    } finally {
      await stopAll(members);
    }
  },

  async idempotent_producer_10k() {
    const n = 10000;
    const partitions = 3;
    const topic = fresh('idem');
    const group = fresh('g');
    await createOk(topic, partitions);
    const md = await withAdmin((a) => a.fetchTopicMetadata({ topics: [topic] }));
    const partitionMetadata = md.topics[0].partitions;
    const partitioner = Partitioners.DefaultPartitioner();
    const expected = range(0, partitions).map(() => []);
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
    try {
      for (let batch = 0; batch < 10; batch++) {
        const messages = range(batch * 1000, (batch + 1) * 1000).map((i) => ({ key: `key-${i % 101}`, value: `idem-${i}` }));
        const before = expected.map((e) => e.length);
        for (const m of messages) expected[partitioner({ topic, partitionMetadata, message: m })].push([m.key, m.value]);
        const res = await producer.send({ topic, acks: -1, messages });
        for (const r of res) {
          check(r.errorCode === 0, `produce error ${json(r)}`);
          check(Number(r.baseOffset) === before[r.partition], `batch ${batch} p${r.partition}: baseOffset ${r.baseOffset}, want ${before[r.partition]}`);
        }
      }
    } finally {
      await producer.disconnect();
    }
    check(expected.every((e) => e.length > 0), `records did not spread over ${partitions} partitions`);
    // Read back through one group member, which is assigned every partition.
    const got = range(0, partitions).map(() => []);
    const c = groupConsumer(group);
    let assigned = [];
    c.on(c.events.GROUP_JOIN, (e) => { assigned = e.payload.memberAssignment[topic] || []; });
    await c.connect();
    try {
      await c.subscribe({ topics: [topic], fromBeginning: true });
      await c.run({
        eachBatch: async ({ batch }) => {
          for (const m of batch.messages) got[batch.partition].push([Number(m.offset), m.key.toString(), m.value.toString()]);
        },
      });
      await waitFor(() => got.flat().length >= n, `${n} records read back`);
      await sleep(500);
    } finally {
      await c.disconnect();
    }
    check(json(assigned.slice().sort()) === json(range(0, partitions)), `assignment ${json(assigned)}`);
    for (let p = 0; p < partitions; p++) {
      const want = expected[p].map(([k, v], i) => [i, k, v]);
      check(got[p].length === want.length, `p${p}: read ${got[p].length} records, want ${want.length}`);
      const bad = want.findIndex((w, i) => json(w) !== json(got[p][i]));
      check(bad === -1, `p${p}: first mismatch at index ${bad}: read ${json(got[p][bad])}, want ${json(want[bad])}`);
    }
  },
};

async function main() {
  const wanted = new Set(process.argv.slice(3));
  const failed = [];
  for (const [name, fn] of Object.entries(scenarios)) {
    if (wanted.size && !wanted.has(name)) continue;
    const start = Date.now();
    const secs = () => ((Date.now() - start) / 1000).toFixed(1);
    let timer;
    try {
      await Promise.race([
        fn(),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('scenario timed out')), 4 * WAIT_MS); }),
      ]);
      console.log(`PASS kafkajs-groups ${name} (${secs()}s)`);
    } catch (e) {
      console.log(e && e.stack ? e.stack : e);
      console.log(`FAIL kafkajs-groups ${name} (${secs()}s)`);
      failed.push(name);
    } finally {
      clearTimeout(timer);
    }
  }
  if (failed.length) {
    console.log(`kafkajs-groups: failed scenarios: ${failed.join(' ')}`);
    process.exit(1);
  }
  process.exit(0);
}

main().catch((e) => {
  console.log(e);
  process.exit(1);
});
