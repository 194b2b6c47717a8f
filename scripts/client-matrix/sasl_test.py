#!/usr/bin/env python3
"""Client-matrix scenarios over SASL_PLAINTEXT or SASL_SSL: confluent-kafka (librdkafka with
OpenSSL, so SCRAM works), kafka-python and aiokafka, each with SCRAM-SHA-512, SCRAM-SHA-256 or
PLAIN; and, given an SSL listener, the same clients over mutual TLS.

Usage: sasl_test.py SASL_BOOTSTRAP [scenario...]

The broker must have a SASL listener at SASL_BOOTSTRAP and the user MATRIX_SASL_USER (default
alice) with password MATRIX_SASL_PASSWORD (default alice-secret) for both SCRAM mechanisms.
Each scenario produces to a fresh topic and reads it back over SASL; the wrong password
scenarios expect Kafka's SASL_AUTHENTICATION_FAILED.

TLS: MATRIX_SECURITY_PROTOCOL=SASL_SSL with MATRIX_SSL_CA (the CA's PEM file) makes the SASL
scenarios run inside TLS. MATRIX_MTLS_BOOTSTRAP (an SSL listener) with MATRIX_SSL_CERT and
MATRIX_SSL_KEY (a client certificate the broker's trust store verifies) adds the mtls
scenarios, whose topics and groups start with "mtls-": the broker's ACLs let only the
certificate's principal use those, so a scenario passes only if the broker mapped it.
"""

import os
import time

from matrix import BOOT, Matrix, check

USER = os.environ.get("MATRIX_SASL_USER", "alice")
PASSWORD = os.environ.get("MATRIX_SASL_PASSWORD", "alice-secret")
SECURITY = os.environ.get("MATRIX_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
CA = os.environ.get("MATRIX_SSL_CA")
MTLS_BOOT = os.environ.get("MATRIX_MTLS_BOOTSTRAP")
CERT = os.environ.get("MATRIX_SSL_CERT")
KEY = os.environ.get("MATRIX_SSL_KEY")
WAIT_S = 30
N = 50
M = Matrix(os.environ.get("MATRIX_CLIENT", "sasl"), "sasl", timeout_s=4 * WAIT_S)
scenario = M.scenario
fresh = M.fresh


def ck_conf(mechanism, password=PASSWORD):
    conf = {
        "bootstrap.servers": BOOT,
        "security.protocol": SECURITY,
        "sasl.mechanism": mechanism,
        "sasl.username": USER,
        "sasl.password": password,
        "broker.address.family": "v4",
    }
    if CA:
        conf["ssl.ca.location"] = CA
    return conf


def ck_mtls_conf():
    return {
        "bootstrap.servers": MTLS_BOOT,
        "security.protocol": "SSL",
        "ssl.ca.location": CA,
        "ssl.certificate.location": CERT,
        "ssl.key.location": KEY,
        "broker.address.family": "v4",
    }


def ck_roundtrip(mechanism, conf=None, prefix=""):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    conf = conf or ck_conf(mechanism)
    topic = prefix + fresh("ck-" + mechanism.lower())
    admin = AdminClient(conf)
    for f in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        f.result(WAIT_S)
    p = Producer(dict(conf, **{"enable.idempotence": True, "acks": "all"}))
    for i in range(N):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    check(p.flush(WAIT_S) == 0, "undelivered records")
    c = Consumer(dict(conf, **{"group.id": prefix + fresh("g"), "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got = set()
    deadline = time.monotonic() + WAIT_S
    while len(got) < N and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.add(m.value())
    c.commit(asynchronous=False)
    c.close()
    check(got == {b"v%d" % i for i in range(N)}, "read back %d of %d" % (len(got), N))


@scenario
def confluent_kafka_scram_sha_512():
    ck_roundtrip("SCRAM-SHA-512")


@scenario
def confluent_kafka_scram_sha_256():
    ck_roundtrip("SCRAM-SHA-256")


@scenario
def confluent_kafka_plain():
    ck_roundtrip("PLAIN")


@scenario
def confluent_kafka_wrong_password_fails_authentication():
    from confluent_kafka import KafkaError, Producer

    errors = []
    conf = dict(ck_conf("SCRAM-SHA-512", "wrong"), error_cb=errors.append)
    p = Producer(conf)
    deadline = time.monotonic() + WAIT_S
    while not errors and time.monotonic() < deadline:
        p.poll(0.2)
    check(errors, "no error reported for a wrong password")
    codes = {e.code() for e in errors}
    check(KafkaError._AUTHENTICATION in codes or KafkaError.SASL_AUTHENTICATION_FAILED in codes,
          "expected an authentication error, got %s" % errors)


def kp_conf(mechanism, password=PASSWORD):
    conf = dict(
        bootstrap_servers=BOOT,
        security_protocol=SECURITY,
        sasl_mechanism=mechanism,
        sasl_plain_username=USER,
        sasl_plain_password=password,
    )
    if CA:
        conf["ssl_cafile"] = CA
    return conf


def kp_mtls_conf():
    return dict(bootstrap_servers=MTLS_BOOT, security_protocol="SSL", ssl_cafile=CA,
                ssl_certfile=CERT, ssl_keyfile=KEY)


def kp_roundtrip(conf, prefix=""):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = prefix + fresh("kp")
    adm = KafkaAdminClient(request_timeout_ms=15000, **conf)
    adm.create_topics([NewTopic(topic, 1, 1)])
    adm.close()
    p = KafkaProducer(acks="all", **conf)
    for i in range(N):
        p.send(topic, value=b"v%d" % i)
    p.flush(WAIT_S)
    p.close()
    c = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=WAIT_S * 1000, **conf)
    c.assign([TopicPartition(topic, 0)])
    got = []
    for m in c:
        got.append(m.value)
        if len(got) == N:
            break
    c.close()
    check(got == [b"v%d" % i for i in range(N)], "read back %d of %d in order" % (len(got), N))


@scenario
def kafka_python_scram_sha_512():
    kp_roundtrip(kp_conf("SCRAM-SHA-512"))


@scenario
def kafka_python_wrong_password_fails_authentication():
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        # The admin client bootstraps at construction: the exchange happens here.
        adm = KafkaAdminClient(request_timeout_ms=10000, **kp_conf("SCRAM-SHA-256", "wrong"))
        adm.close()
    except KafkaError:
        # kafka-python probes the broker's version at bootstrap and reports the refused
        # exchange as whatever the probe concluded (IncompatibleBrokerVersion,
        # NoBrokersAvailable): only that it fails is the client's to say.
        return
    raise AssertionError("an admin client with a wrong password connected")


def aio_ssl_context(cert=None, key=None):
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=CA, certfile=cert, keyfile=key)


async def aio_roundtrip(conf, prefix=""):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = prefix + fresh("aio")
    adm = AIOKafkaAdminClient(**conf)
    await adm.start()
    try:
        await adm.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await adm.close()
    p = AIOKafkaProducer(acks="all", **conf)
    await p.start()
    try:
        for i in range(N):
            await p.send_and_wait(topic, b"v%d" % i)
    finally:
        await p.stop()
    c = AIOKafkaConsumer(auto_offset_reset="earliest", **conf)
    await c.start()
    try:
        c.assign([TopicPartition(topic, 0)])
        got = []
        deadline = time.monotonic() + WAIT_S
        while len(got) < N and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=500)
            for msgs in batch.values():
                got.extend(m.value for m in msgs)
    finally:
        await c.stop()
    check(got == [b"v%d" % i for i in range(N)], "read back %d of %d in order" % (len(got), N))


@scenario
async def aiokafka_scram_sha_256():
    conf = dict(bootstrap_servers=BOOT, security_protocol=SECURITY, sasl_mechanism="SCRAM-SHA-256",
                sasl_plain_username=USER, sasl_plain_password=PASSWORD)
    if CA:
        conf["ssl_context"] = aio_ssl_context()
    await aio_roundtrip(conf)


if MTLS_BOOT:
    @scenario
    def confluent_kafka_mtls():
        ck_roundtrip("mtls", ck_mtls_conf(), prefix="mtls-")

    @scenario
    def kafka_python_mtls():
        kp_roundtrip(kp_mtls_conf(), prefix="mtls-")

    @scenario
    async def aiokafka_mtls():
        await aio_roundtrip(dict(bootstrap_servers=MTLS_BOOT, security_protocol="SSL",
                                 ssl_context=aio_ssl_context(CERT, KEY)), prefix="mtls-")


if __name__ == "__main__":
    M.run()
