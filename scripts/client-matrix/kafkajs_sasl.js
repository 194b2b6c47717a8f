#!/usr/bin/env node
// Client-matrix scenarios for KafkaJS 2 over SASL_PLAINTEXT or SASL_SSL: SCRAM-SHA-512,
// SCRAM-SHA-256 and PLAIN each create a topic, produce, and read the records back with a
// consumer group; a wrong password must fail with SASL_AUTHENTICATION_FAILED. Given an SSL
// listener, the same round trip over mutual TLS on topics and groups starting with "mtls-",
// which the broker's ACLs leave to the client certificate's principal alone.
//
// Usage: node kafkajs_sasl.js SASL_BOOTSTRAP [scenario...]
// Env: MATRIX_SASL_USER (alice), MATRIX_SASL_PASSWORD (alice-secret), MATRIX_DEBUG=1;
// MATRIX_SECURITY_PROTOCOL=SASL_SSL with MATRIX_SSL_CA (CA PEM) for SASL inside TLS;
// MATRIX_MTLS_BOOTSTRAP, MATRIX_SSL_CERT, MATRIX_SSL_KEY for the mtls scenario.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const path = require('path');
const crypto = require('crypto');
const fs = require('fs');
const { Kafka, logLevel } = require(
  process.env.KAFKAJS_PATH || path.join(__dirname, '..', '..', '.test-deps', 'node', 'node_modules', 'kafkajs'),
);

const BOOT = process.argv[2] || '127.0.0.1:9094';
const USER = process.env.MATRIX_SASL_USER || 'alice';
const PASSWORD = process.env.MATRIX_SASL_PASSWORD || 'alice-secret';
const WAIT_MS = 30000;
const CLIENT = process.env.MATRIX_CLIENT || 'kafkajs-sasl';
const SSL = process.env.MATRIX_SECURITY_PROTOCOL === 'SASL_SSL';
const CA = process.env.MATRIX_SSL_CA;
const MTLS_BOOT = process.env.MATRIX_MTLS_BOOTSTRAP;
const N = 50;

function client(mechanism, password) {
  return new Kafka({
    clientId: 'matrix-kafkajs-sasl',
    brokers: [BOOT],
    sasl: { mechanism, username: USER, password },
    ssl: SSL ? { ca: [fs.readFileSync(CA)] } : false,
    logLevel: process.env.MATRIX_DEBUG ? logLevel.DEBUG : logLevel.NOTHING,
    connectionTimeout: 10000,
    requestTimeout: 20000,
    retry: { retries: 2 },
  });
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

function mtlsClient() {
  return new Kafka({
    clientId: 'matrix-kafkajs-mtls',
    brokers: [MTLS_BOOT],
    ssl: {
      ca: [fs.readFileSync(CA)],
      cert: fs.readFileSync(process.env.MATRIX_SSL_CERT),
      key: fs.readFileSync(process.env.MATRIX_SSL_KEY),
    },
    logLevel: process.env.MATRIX_DEBUG ? logLevel.DEBUG : logLevel.NOTHING,
    connectionTimeout: 10000,
    requestTimeout: 20000,
    retry: { retries: 2 },
  });
}

async function roundtrip(mechanism, kafka = client(mechanism, PASSWORD), prefix = '') {
  const topic = `${prefix}kjs-sasl-${mechanism}-${crypto.randomBytes(5).toString('hex')}`;
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
  const producer = kafka.producer();
  await producer.connect();
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: Array.from({ length: N }, (_, i) => ({ value: `v${i}` })),
    });
  } finally {
    await producer.disconnect();
  }
  const consumer = kafka.consumer({ groupId: `${prefix}g-${topic}` });
  await consumer.connect();
  const got = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${got.length} of ${N}`)), WAIT_MS);
      consumer.run({
        eachMessage: async ({ message }) => {
          got.push(message.value.toString());
          if (got.length === N) {
            clearTimeout(timer);
            resolve();
          }
        },
      }).catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  check(got.join(',') === Array.from({ length: N }, (_, i) => `v${i}`).join(','), 'records out of order');
}

const scenarios = {
  scram_sha_512: () => roundtrip('scram-sha-512'),
  scram_sha_256: () => roundtrip('scram-sha-256'),
  plain: () => roundtrip('plain'),
  ...(MTLS_BOOT ? { mtls: () => roundtrip('mtls', mtlsClient(), 'mtls-') } : {}),
  wrong_password_fails_authentication: async () => {
    const admin = client('scram-sha-512', 'wrong').admin();
    try {
      await admin.connect();
    } catch (e) {
      check(/SASL|[Aa]uthentication/.test(`${e.name} ${e.message} ${e.type}`), `unexpected error ${e}`);
      return;
    } finally {
      await admin.disconnect().catch(() => {});
    }
    throw new Error('connected with a wrong password');
  },
};

(async () => {
  const wanted = process.argv.slice(3);
  let failed = 0;
  for (const [name, fn] of Object.entries(scenarios)) {
    if (wanted.length && !wanted.includes(name)) continue;
    const started = Date.now();
    try {
      await fn();
      console.log(`PASS ${CLIENT} ${name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${CLIENT} ${name}: ${e && e.stack ? e.stack : e}`);
    }
  }
  process.exit(failed ? 1 : 0);
})();
