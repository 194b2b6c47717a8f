#!/usr/bin/env node
// Client-matrix scenarios for KafkaJS 2 against a running Sluice broker.
//
// Usage: node kafkajs_test.js BOOTSTRAP [scenario...]
//
// KafkaJS has no group-less consumer, and consumer groups live in kafkajs_groups.js, so nothing is
// consumed: records are checked through produce results (baseOffset per partition) and the admin
// offset APIs (fetchTopicOffsets, fetchTopicOffsetsByTimestamp). Every scenario uses fresh topics and
// prints PASS/FAIL/SKIP; the exit status is 1 if any scenario failed. MATRIX_DEBUG=1 logs at debug.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const path = require('path');
const crypto = require('crypto');
const { Kafka, CompressionTypes, ConfigResourceTypes, Partitioners, logLevel } = require(
  process.env.KAFKAJS_PATH || path.join(__dirname, '..', '..', '.test-deps', 'node', 'node_modules', 'kafkajs'),
);

const BOOT = process.argv[2] || '127.0.0.1:9092';
const WAIT_MS = 30000;
const SOURCE_DYNAMIC_TOPIC = 1;
const SOURCE_STATIC_BROKER = 4;
const SOURCE_DEFAULT = 5;

const kafka = new Kafka({
  clientId: 'matrix-kafkajs',
  brokers: [BOOT],
  logLevel: process.env.MATRIX_DEBUG ? logLevel.DEBUG : logLevel.NOTHING,
  connectionTimeout: 10000,
  requestTimeout: 20000,
  retry: { retries: 3 },
});

class Skip extends Error {}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}
function fresh(tag) {
  return `kjs-${tag}-${crypto.randomBytes(5).toString('hex')}`;
}
const json = (v) => JSON.stringify(v);

async function withAdmin(fn) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}
async function withProducer(fn) {
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false });
  await producer.connect();
  try {
    return await fn(producer);
  } finally {
    await producer.disconnect();
  }
}
async function create(admin, topic, numPartitions = 1, configs = {}) {
  const configEntries = Object.entries(configs).map(([name, value]) => ({ name, value }));
  return admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1, configEntries }],
    waitForLeaders: true,
    timeout: 15000,
  });
}
async function createOk(topic, numPartitions = 1, configs = {}) {
  const created = await withAdmin((a) => create(a, topic, numPartitions, configs));
  check(created === true, `createTopics(${topic}) returned ${created}`);
}
// {partition: {low, high}} from admin.fetchTopicOffsets.
async function offsets(topic) {
  const rows = await withAdmin((a) => a.fetchTopicOffsets(topic));
  const out = {};
  for (const r of rows) out[r.partition] = { low: Number(r.low), high: Number(r.high) };
  return out;
}
function errorCode(e) {
  for (let x = e; x; x = x.originalError || x.cause) {
    if (typeof x.code === 'number') return x.code;
  }
  return undefined;
}
async function topicConfigs(admin, name) {
  const res = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name }],
    includeSynonyms: false,
  });
  check(res.resources.length === 1 && res.resources[0].errorCode === 0, `describeConfigs: ${json(res)}`);
  const out = {};
  for (const e of res.resources[0].configEntries) out[e.configName] = [e.configValue, e.configSource];
  return out;
}
function alter(admin, name, configs) {
  return admin.alterConfigs({
    validateOnly: false,
    resources: [{
      type: ConfigResourceTypes.TOPIC,
      name,
      configEntries: Object.entries(configs).map(([n, value]) => ({ name: n, value })),
    }],
  });
}

const scenarios = {
  // A transactional producer (transactionalId): one committed and one aborted transaction over
  // three partitions. Each transaction ends with a marker on each of its partitions, so the log
  // ends add up to the records plus one marker per partition per transaction; the
  // markers are written after EndTxn answers, so the ends are polled until they add up.
  async transactions() {
    const name = fresh('txn');
    await createOk(name, 3);
    const producer = kafka.producer({
      allowAutoTopicCreation: false,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionalId: fresh('kjs-tx'),
    });
    await producer.connect();
    try {
      const committed = await producer.transaction();
      await committed.send({
        topic: name,
        messages: Array.from({ length: 30 }, (_, i) => ({ value: `c${i}`, partition: i % 3 })),
      });
      await committed.commit();
      const aborted = await producer.transaction();
      await aborted.send({
        topic: name,
        messages: Array.from({ length: 20 }, (_, i) => ({ value: `a${i}`, partition: i % 3 })),
      });
      await aborted.abort();
    } finally {
      await producer.disconnect();
    }
    // EndTxn returns once the decision is durable; the markers follow (as in Kafka).
    const deadline = Date.now() + WAIT_MS;
    let ends;
    let total;
    for (;;) {
      ends = await offsets(name);
      total = Object.values(ends).reduce((n, o) => n + o.high, 0);
      if (total === 56 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    check(total === 30 + 20 + 6, `log ends ${json(ends)} add up to ${total}, want 56`);
  },

  async admin_topics() {
    const name = fresh('admin');
    await withAdmin(async (admin) => {
      check((await create(admin, name, 1, { 'retention.ms': '3600000' })) === true, 'createTopics returned false');
      check((await admin.listTopics()).includes(name), 'created topic missing from listTopics');
      let md = await admin.fetchTopicMetadata({ topics: [name] });
      check(md.topics.length === 1 && md.topics[0].partitions.length === 1, `metadata after create: ${json(md)}`);
      check((await create(admin, name, 1)) === false, 're-creating an existing topic did not return false');
      await admin.createPartitions({ topicPartitions: [{ topic: name, count: 3 }] });
      md = await admin.fetchTopicMetadata({ topics: [name] });
      const ids = md.topics[0].partitions.map((p) => p.partitionId).sort();
      check(json(ids) === json([0, 1, 2]), `partitions after createPartitions(3): ${json(ids)}`);
      // Apache Kafka elects the new partitions' leader a little after CreatePartitions answers
      // (KafkaJS then gets NOT_LEADER_OR_FOLLOWER from ListOffsets and does not retry it itself);
      // Sluice serves them at once. Retry retriable errors within the bound.
      let offs;
      for (const until = Date.now() + WAIT_MS; ;) {
        try {
          offs = await admin.fetchTopicOffsets(name);
          break;
        } catch (e) {
          if (!e.retriable || Date.now() >= until) throw e;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      check(offs.length === 3 && offs.every((o) => o.low === '0' && o.high === '0'), `offsets: ${json(offs)}`);
      await admin.deleteTopics({ topics: [name], timeout: 15000 });
      const deadline = Date.now() + WAIT_MS;
      while ((await admin.listTopics()).includes(name)) {
        check(Date.now() < deadline, `topic still listed ${WAIT_MS} ms after delete`);
        await new Promise((r) => setTimeout(r, 100));
      }
    });
  },

  async produce_10k() {
    const n = 10000;
    const partitions = 3;
    const name = fresh('bulk');
    await createOk(name, partitions);
    const md = await withAdmin((a) => a.fetchTopicMetadata({ topics: [name] }));
    const partitionMetadata = md.topics[0].partitions;
    // The producer's own partitioner, to know where each message goes; the broker must then
    // assign consecutive offsets per partition across batches.
    const partitioner = Partitioners.DefaultPartitioner();
    const counts = [0, 0, 0];
    const keyPartition = new Map();
    await withProducer(async (producer) => {
      for (let batch = 0; batch < 10; batch++) {
        const messages = [];
        const before = counts.slice();
        for (let i = batch * 1000; i < (batch + 1) * 1000; i++) {
          const m = { key: `key-${i % 97}`, value: `value-${i}` };
          const p = partitioner({ topic: name, partitionMetadata, message: m });
          check((keyPartition.get(m.key) ?? p) === p, `key ${m.key} on two partitions`);
          keyPartition.set(m.key, p);
          counts[p]++;
          messages.push(m);
        }
        const res = await producer.send({ topic: name, acks: -1, messages });
        for (const r of res) {
          check(r.errorCode === 0, `produce error ${json(r)}`);
          check(Number(r.baseOffset) === before[r.partition], `batch ${batch} p${r.partition}: baseOffset ${r.baseOffset}, want ${before[r.partition]}`);
        }
      }
    });
    check(counts.every((c) => c > 0), `records did not spread over ${partitions} partitions: ${counts}`);
    const offs = await offsets(name);
    for (let p = 0; p < partitions; p++) {
      check(offs[p].low === 0 && offs[p].high === counts[p], `p${p} offsets ${json(offs[p])}, want 0..${counts[p]}`);
    }
  },

  async headers_nulls_timestamps() {
    const name = fresh('hdr');
    await createOk(name, 1);
    const ts = 1600000000000;
    const messages = [
      { key: null, value: 'no-key', headers: { h1: 'x', h2: '' }, timestamp: String(ts) },
      { key: 'tomb', value: null, timestamp: String(ts + 1) },
      { key: null, value: null, headers: { dup: ['1', '2'] }, timestamp: String(ts + 2) },
      { key: 'k', value: 'v', headers: { bin: Buffer.from([...Array(256).keys()]) }, timestamp: String(ts - 1000) },
    ];
    const res = await withProducer((p) => p.send({ topic: name, acks: -1, messages: messages.map((m) => ({ ...m, partition: 0 })) }));
    check(res.length === 1 && res[0].errorCode === 0 && res[0].baseOffset === '0', `produce: ${json(res)}`);
    const offs = await offsets(name);
    check(offs[0].high === 4, `high watermark ${offs[0].high}, want 4`);
    // Explicit timestamps must have been kept: look them up.
    await withAdmin(async (admin) => {
      for (const [q, want] of [[ts - 5000, 0], [ts + 1, 1], [ts + 2, 2], [ts + 3, 4]]) {
        const r = await admin.fetchTopicOffsetsByTimestamp(name, q);
        check(r.length === 1 && r[0].offset === String(want), `offset for time ${q}: ${json(r)}, want ${want}`);
      }
    });
  },

  async compression() {
    for (const [label, codec] of [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]) {
      const name = fresh(`codec-${label}`);
      await createOk(name, 1);
      const messages = [];
      for (let i = 0; i < 500; i++) messages.push({ key: `k${i}`, value: `compressible-${i}-`.repeat(20), partition: 0 });
      const res = await withProducer((p) => p.send({ topic: name, acks: -1, compression: codec, messages }));
      check(res.length === 1 && res[0].errorCode === 0 && res[0].baseOffset === '0', `${label}: produce ${json(res)}`);
      const offs = await offsets(name);
      check(offs[0].high === 500, `${label}: high watermark ${offs[0].high}, want 500`);
      console.log(`  codec ${label} ok`);
    }
  },

  async acks_levels() {
    for (const acks of [0, 1, -1]) {
      const name = fresh(`acks${acks}`);
      await createOk(name, 1);
      const messages = [];
      for (let i = 0; i < 100; i++) messages.push({ value: `a${acks}-${i}`, partition: 0 });
      const res = await withProducer((p) => p.send({ topic: name, acks, messages }));
      if (acks !== 0) {
        check(res.length === 1 && res[0].errorCode === 0 && res[0].baseOffset === '0', `acks=${acks}: ${json(res)}`);
      }
      // acks=0 has no answer: wait (bounded) until the records are visible.
      const deadline = Date.now() + WAIT_MS;
      let high;
      for (;;) {
        high = (await offsets(name))[0].high;
        if (high === 100 || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      check(high === 100, `acks=${acks}: high watermark ${high}, want 100`);
    }
  },

  async message_size_limits() {
    const big = fresh('big');
    const small = fresh('small');
    await createOk(big, 1, { 'max.message.bytes': '2000000' });
    await createOk(small, 1, { 'max.message.bytes': '10000' });
    await withProducer(async (producer) => {
      const res = await producer.send({ topic: big, acks: -1, messages: [{ value: crypto.randomBytes(1 << 20), partition: 0 }] });
      check(res.length === 1 && res[0].baseOffset === '0', `1 MiB produce: ${json(res)}`);
      let err = null;
      try {
        await producer.send({ topic: small, acks: -1, messages: [{ value: crypto.randomBytes(20000), partition: 0 }] });
      } catch (e) {
        err = e;
      }
      check(err !== null, '20000-byte record accepted by a topic with max.message.bytes=10000');
      check(errorCode(err) === 10, `expected MESSAGE_TOO_LARGE (10), got ${err && err.name}: ${err && err.message} (type ${err && err.type})`);
    });
    const offs = await offsets(big);
    check(offs[0].high === 1, `big topic high watermark ${offs[0].high}`);
  },

  async list_offsets() {
    const name = fresh('offsets');
    await createOk(name, 1);
    const t0 = 1700000000000;
    const messages = [];
    for (let i = 0; i < 10; i++) messages.push({ value: `${i}`, timestamp: String(t0 + i * 1000), partition: 0 });
    await withProducer((p) => p.send({ topic: name, acks: -1, messages }));
    const offs = await offsets(name);
    check(offs[0].low === 0 && offs[0].high === 10, `earliest/latest ${json(offs[0])}, want 0/10`);
    await withAdmin(async (admin) => {
      // Past the last record Kafka answers -1 and KafkaJS substitutes the high watermark.
      for (const [q, want] of [[t0 - 5000, 0], [t0, 0], [t0 + 2500, 3], [t0 + 9000, 9], [t0 + 10000, 10]]) {
        const r = await admin.fetchTopicOffsetsByTimestamp(name, q);
        check(r.length === 1 && r[0].offset === String(want), `offset for time ${q}: ${json(r)}, want ${want}`);
      }
    });
  },

  async out_of_range_fetch() {
    throw new Skip('KafkaJS has no group-less consumer');
  },

  async configs() {
    const name = fresh('cfg');
    await createOk(name, 1, { 'retention.ms': '3600000' });
    await withAdmin(async (admin) => {
      let cfg = await topicConfigs(admin, name);
      check('retention.ms' in cfg && 'segment.bytes' in cfg, `configs listed: ${Object.keys(cfg)}`);
      check(json(cfg['retention.ms']) === json(['3600000', SOURCE_DYNAMIC_TOPIC]), `retention.ms ${json(cfg['retention.ms'])}`);
      check([SOURCE_STATIC_BROKER, SOURCE_DEFAULT].includes(cfg['segment.bytes'][1]), `segment.bytes ${json(cfg['segment.bytes'])}`);
      const res = await alter(admin, name, { 'retention.ms': '7200000' });
      check(res.resources.length === 1 && res.resources[0].errorCode === 0, `alter: ${json(res)}`);
      cfg = await topicConfigs(admin, name);
      check(json(cfg['retention.ms']) === json(['7200000', SOURCE_DYNAMIC_TOPIC]), `after alter: ${json(cfg['retention.ms'])}`);
      let err = null;
      try {
        await alter(admin, name, { 'retention.ms': 'soon' });
      } catch (e) {
        err = e;
      }
      check(err !== null, 'retention.ms=soon accepted');
      check(errorCode(err) === 40, `expected INVALID_CONFIG (40), got ${err.name}: ${err.message}`);
      cfg = await topicConfigs(admin, name);
      check(cfg['retention.ms'][0] === '7200000', `rejected alter changed the value: ${json(cfg['retention.ms'])}`);
    });
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
      console.log(`PASS kafkajs ${name} (${secs()}s)`);
    } catch (e) {
      if (e instanceof Skip) {
        console.log(`SKIP kafkajs ${name}: ${e.message}`);
      } else {
        console.log(e && e.stack ? e.stack : e);
        console.log(`FAIL kafkajs ${name} (${secs()}s)`);
        failed.push(name);
      }
    } finally {
      clearTimeout(timer);
    }
  }
  if (failed.length) {
    console.log(`kafkajs: failed scenarios: ${failed.join(' ')}`);
    process.exit(1);
  }
  process.exit(0);
}

main().catch((e) => {
  console.log(e);
  process.exit(1);
});
