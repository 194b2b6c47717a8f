#!/usr/bin/env python3
"""Client-matrix scenario for Kafka Connect 4.x against a running broker: a distributed worker
(Apache Kafka's connect-runtime) with Debezium's PostgreSQL source and Debezium's JDBC sink,
between two databases of a PostgreSQL server this script starts from Debian's packages.

Usage: connect_test.py BOOTSTRAP [scenario...]

What it checks, through the worker's REST API, psql and kafka-python:
- the worker creates its config, offset and status topics (compacted, as Connect demands: it
  reads their `cleanup.policy` back with DescribeConfigs and refuses to start otherwise) and
  joins its group;
- the source streams a table's inserts, updates and deletes into a topic it creates (CreateTopics
  from `topic.creation.default.*`); the sink, a consumer group committing offsets, applies them
  to a table in the other database (upsert by primary key, deletes);
- the worker is killed with SIGKILL while rows change and started again: afterwards the sink
  table equals the source table (no row lost; Debezium's source is at-least-once, so an event may
  be sent twice after the kill, and the upserting sink applies a repeated event idempotently);
- every change made to the source is in the topic, each key's events in the order they were made.

Installed by scripts/install-test-deps.sh into .test-deps/connect (CONNECT_MATRIX_DIR):
worker/ (the runtime's jars) and plugins/ (one directory per connector, the worker's
`plugin.path`). The worker's log (WARN and up) and PostgreSQL's log are printed on failure.
"""

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

from kafka import KafkaConsumer, TopicPartition

from matrix import BOOT, Matrix, check

WAIT_S = 120
M = Matrix("kafka-connect", "kc", timeout_s=6 * WAIT_S)
DEPS = os.environ.get("CONNECT_MATRIX_DIR", "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fatal(AssertionError):
    """A failure that waiting longer will not mend (a connector's task FAILED)."""


def wait_until(what, cond, timeout_s=WAIT_S, every_s=0.5):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except Fatal:
            raise
        except Exception as e:  # a poll that fails is retried until the deadline
            last = e
        time.sleep(every_s)
    raise AssertionError("%s: not within %ss (last: %r)" % (what, timeout_s, last))


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class Postgres:
    """A throw-away PostgreSQL server on loopback with logical decoding on (for Debezium). The
    postmaster is this script's child, in its process group (not daemonised by pg_ctl), so that
    the harness's kill of the group on a timeout stops it too."""

    def __init__(self, root):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        check(bins, "no PostgreSQL server (Debian's postgresql package; scripts/install-test-deps.sh)")
        self.bin = os.path.dirname(bins[-1])
        self.dir = os.path.join(root, "pg")
        self.log = os.path.join(root, "pg.log")
        self.port = free_port()
        os.makedirs(self.dir)
        # PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user.
        self.user = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self.user = "postgres"
            os.chown(root, pw.pw_uid, pw.pw_gid)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        r = subprocess.run([os.path.join(self.bin, "initdb"), "-D", self.dir, "-U", "postgres", "--auth=trust",
                            "-E", "UTF8"], capture_output=True, text=True, timeout=90, user=self.user)
        check(r.returncode == 0, "initdb failed: %s%s" % (r.stdout, r.stderr))
        log = open(self.log, "a")
        self.proc = subprocess.Popen(
            [os.path.join(self.bin, "postgres"), "-D", self.dir, "-c", "listen_addresses=127.0.0.1",
             "-c", "port=%d" % self.port, "-c", "unix_socket_directories=" + self.dir,
             "-c", "wal_level=logical", "-c", "max_wal_senders=4", "-c", "max_replication_slots=4",
             "-c", "fsync=off"],
            stdout=log, stderr=subprocess.STDOUT, user=self.user,
        )
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise Fatal("postgres exited:\n" + tail(self.log))
            return subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                                   str(self.port)], timeout=10).returncode == 0

        wait_until("PostgreSQL accepts connections", ready, 60)

    def sql(self, db, statement):
        """Runs `statement` in database `db`; returns the rows, fields split on '|'."""
        r = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db, "-X", "-q", "-A", "-t",
             "-v", "ON_ERROR_STOP=1", "-c", statement],
            capture_output=True, text=True, timeout=60,
        )
        check(r.returncode == 0, "psql %s: %s: %s" % (db, statement[:200], r.stderr))
        return [line.split("|") for line in r.stdout.splitlines() if line]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # immediate shutdown: the data is thrown away
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Worker:
    """A Kafka Connect distributed worker (one JVM) with a REST listener on loopback."""

    def __init__(self, root, tag):
        self.root = root
        self.tag = tag
        self.url = None
        self.log = os.path.join(root, "connect.log")
        self.props = os.path.join(root, "worker.properties")
        log4j = os.path.join(root, "log4j2.properties")
        with open(log4j, "w") as f:
            f.write(
                "appender.out.type=Console\nappender.out.name=out\nappender.out.layout.type=PatternLayout\n"
                "appender.out.layout.pattern=%%d{HH:mm:ss.SSS} %%-5p [%%c{1}] %%m%%n\n"
                "rootLogger.level=%s\nrootLogger.appenderRef.out.ref=out\n"
                % ("INFO" if os.environ.get("MATRIX_DEBUG") else "WARN")
            )
        self.log4j = log4j
        self.proc = None

    def start(self):
        # A new REST port at each start: the old one may have been taken, while the killed worker
        # was down, as some client's source port.
        self.url = "http://127.0.0.1:%d" % free_port()
        tag = self.tag
        with open(self.props, "w") as f:
            f.write(
                "\n".join(
                    [
                        "bootstrap.servers=%s" % BOOT,
                        "group.id=%s" % tag,
                        # Connect's internal topics, created by the worker; -1 takes the broker's
                        # default replication factor (KIP-464).
                        "config.storage.topic=%s-configs" % tag,
                        "offset.storage.topic=%s-offsets" % tag,
                        "status.storage.topic=%s-status" % tag,
                        "config.storage.replication.factor=-1",
                        "offset.storage.replication.factor=-1",
                        "status.storage.replication.factor=-1",
                        "key.converter=org.apache.kafka.connect.json.JsonConverter",
                        "value.converter=org.apache.kafka.connect.json.JsonConverter",
                        "offset.flush.interval.ms=1000",
                        # One worker that comes back after a kill (as a new member, on a new
                        # port): give it the lost tasks at once rather than after the default
                        # 5 minutes (KIP-415).
                        "scheduled.rebalance.max.delay.ms=0",
                        "listeners=%s" % self.url,
                        "plugin.path=%s" % os.path.join(DEPS, "plugins"),
                        "plugin.discovery=hybrid_warn",
                        "",
                    ]
                )
            )
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            ["java", "-Xmx768m", "-Dlog4j2.configurationFile=" + self.log4j,
             "-cp", os.path.join(DEPS, "worker", "*"),
             "org.apache.kafka.connect.cli.ConnectDistributed", self.props],
            stdout=out, stderr=subprocess.STDOUT,
        )
        out.close()
        wait_until("the Connect worker's REST API answers", lambda: self.get("/connectors") is not None, 180)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def request(self, method, path, body=None):
        check(self.proc.poll() is None, "the worker exited with %s:\n%s" % (self.proc.returncode, tail(self.log)))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return json.loads(raw) if raw else {}

    def get(self, path):
        try:
            return self.request("GET", path)
        except (urllib.error.URLError, ConnectionError, socket.timeout):
            return None

    def running(self, name):
        st = self.get("/connectors/%s/status" % name)
        if not st:
            return False
        for t in st.get("tasks", []):
            if t["state"] == "FAILED":
                raise Fatal("%s task failed: %s" % (name, t.get("trace", "")[:3000]))
        if st["connector"]["state"] == "FAILED":
            raise Fatal("%s failed: %s" % (name, st["connector"].get("trace", "")[:3000]))
        return st["connector"]["state"] == "RUNNING" and st["tasks"] and all(
            t["state"] == "RUNNING" for t in st["tasks"])


class Workload:
    """Inserts, updates and deletes rows of `items` in the source database, and remembers every
    change it made: `changes[id]` lists the row's states in order (None for a delete)."""

    def __init__(self, pg):
        self.pg = pg
        self.changes = {}
        self.next_id = 1

    def round(self, n):
        """One transaction: `n` inserts, then an update of every third new row and a delete of
        every tenth."""
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        stmts = ["BEGIN"]
        for i in ids:
            stmts.append("INSERT INTO items VALUES (%d, 'item-%d', %d)" % (i, i, i))
            self.changes.setdefault(i, []).append(("item-%d" % i, i))
        for i in ids[::3]:
            stmts.append("UPDATE items SET name = 'item-%d-v2', qty = qty + 1000 WHERE id = %d" % (i, i))
            self.changes[i].append(("item-%d-v2" % i, i + 1000))
        for i in ids[::10]:
            stmts.append("DELETE FROM items WHERE id = %d" % i)
            self.changes[i].append(None)
        stmts.append("COMMIT")
        self.pg.sql("src", ";\n".join(stmts))

    def expected(self):
        return {i: s[-1] for i, s in self.changes.items() if s[-1] is not None}


def table(pg, db, name):
    rows = pg.sql(db, "SELECT id, name, qty FROM %s ORDER BY id" % name)
    return {int(r[0]): (r[1], int(r[2])) for r in rows}


def sink_matches(pg, want):
    try:
        got = table(pg, "sink", "items_copy")
    except AssertionError:  # the sink has not created its table yet
        return False
    return got == want or (len(got), len(want))


def topic_events(topic, partitions, deadline_s):
    """Every change event in `topic`: {id: [(name, qty) or None, ...]} in offset order per key."""
    c = KafkaConsumer(bootstrap_servers=BOOT, group_id=None, enable_auto_commit=False,
                      client_id="matrix-kc-check", request_timeout_ms=20000)
    tps = [TopicPartition(topic, p) for p in partitions]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    end = c.end_offsets(tps)
    events = {}
    deadline = time.monotonic() + deadline_s
    while any(c.position(tp) < end[tp] for tp in tps):
        check(time.monotonic() < deadline, "could not read %s to its end within %ss" % (topic, deadline_s))
        for _tp, recs in c.poll(timeout_ms=1000).items():
            for r in recs:
                if r.value is None:
                    continue  # the tombstone after a delete
                key = json.loads(r.key)["payload"]["id"]
                v = json.loads(r.value)["payload"]
                if v["op"] == "d":
                    state = None
                else:
                    state = (v["after"]["name"], v["after"]["qty"])
                events.setdefault(key, []).append(state)
    c.close()
    return events


def in_order_at_least_once(made, seen):
    """True if `seen` holds `made` as a subsequence, allowing a replayed run of events after a
    restart (at-least-once): every state made appears, in order, possibly repeated."""
    j = 0
    for s in seen:
        if j < len(made) and s == made[j]:
            j += 1
        elif s not in made[:j]:
            return False
    return j == len(made)


@M.scenario
def debezium_postgres_to_jdbc_sink_across_a_worker_kill():
    check(os.path.isdir(os.path.join(DEPS, "worker")), "no Connect worker in CONNECT_MATRIX_DIR=%r" % DEPS)
    root = tempfile.mkdtemp(prefix="sluice-connect-")
    tag = M.fresh("w").replace("-", "_")
    prefix = tag.replace("_", "")
    pg = worker = None
    try:
        pg = Postgres(root)
        pg.sql("postgres", "CREATE DATABASE src")
        pg.sql("postgres", "CREATE DATABASE sink")
        pg.sql("src", "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL)")
        work = Workload(pg)
        work.round(50)  # rows before the connector starts: Debezium's initial snapshot
        snapshotted = set(work.changes)

        worker = Worker(root, tag)
        worker.start()
        topic = "%s.public.items" % prefix
        worker.request("PUT", "/connectors/pg-source/config", {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "tasks.max": "1",
            "database.hostname": "127.0.0.1",
            "database.port": str(pg.port),
            "database.user": "postgres",
            "database.password": "unused",
            "database.dbname": "src",
            "topic.prefix": prefix,
            "table.include.list": "public.items",
            "plugin.name": "pgoutput",
            "slot.name": tag[:60],
            "publication.name": "pub_" + tag[:55],
            "publication.autocreate.mode": "filtered",
            "topic.creation.default.partitions": "3",
            "topic.creation.default.replication.factor": "-1",
        })
        worker.request("PUT", "/connectors/jdbc-sink/config", {
            "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
            "tasks.max": "1",
            "topics": topic,
            "connection.url": "jdbc:postgresql://127.0.0.1:%d/sink" % pg.port,
            "connection.username": "postgres",
            "connection.password": "unused",
            "insert.mode": "upsert",
            "delete.enabled": "true",
            "primary.key.mode": "record_key",
            "schema.evolution": "basic",
            "collection.name.format": "items_copy",
        })
        wait_until("both connectors running", lambda: worker.running("pg-source") and worker.running("jdbc-sink"), 180)

        # Streaming while the worker runs.
        for _ in range(3):
            work.round(40)
        wait_until("the sink table matches the source", lambda: sink_matches(pg, work.expected()) is True)
        check(table(pg, "src", "items") == work.expected(), "the source table is not what the workload made")

        # Rows keep changing while the worker is killed and started again.
        errors = []

        def churn():
            try:
                for _ in range(30):
                    work.round(20)
                    time.sleep(0.1)
            except Exception as e:
                errors.append(e)

        t = threading.Thread(target=churn)
        t.start()
        time.sleep(1.5)
        worker.kill()
        t.join(120)
        check(not t.is_alive() and not errors, "the workload failed: %r" % errors)
        worker.start()
        wait_until("both connectors running after the restart",
                   lambda: worker.running("pg-source") and worker.running("jdbc-sink"), 180)
        work.round(40)
        want = work.expected()
        check(table(pg, "src", "items") == want, "the source table is not what the workload made")
        wait_until("the sink table matches the source after the kill", lambda: sink_matches(pg, want) is True, 180)

        # The topic holds every change, each key's in the order made.
        probe = KafkaConsumer(bootstrap_servers=BOOT, group_id=None, client_id="matrix-kc-check")
        parts = wait_until("the source topic's partitions", lambda: sorted(probe.partitions_for_topic(topic) or []))
        probe.close()
        check(len(parts) == 3, "the source topic has %d partitions, not 3" % len(parts))
        events = topic_events(topic, parts, WAIT_S)
        # The rows made before the connector started reach the topic as the initial snapshot
        # read them: their last state only (nothing for a row already deleted).
        made = {i: ([s[-1]] if s[-1] is not None else []) if i in snapshotted else s
                for i, s in work.changes.items()}
        made = {i: s for i, s in made.items() if s}
        missing = [i for i in made if i not in events]
        check(not missing, "no event for ids %s" % missing[:20])
        bad = [i for i in made if not in_order_at_least_once(made[i], events[i])]
        check(not bad, "events out of order or lost for ids %s: made %r, seen %r"
              % (bad[:5], made[bad[0]] if bad else None, events[bad[0]] if bad else None))
        dupes = sum(len(events[i]) - len(made[i]) for i in made)
        print("connect: %d rows changed %d times; %d events repeated after the kill"
              % (len(made), sum(len(s) for s in made.values()), dupes))
    except BaseException:
        if worker:
            print("--- Connect worker log (tail)\n" + tail(worker.log, 80))
        if pg:
            print("--- PostgreSQL log (tail)\n" + tail(pg.log, 30))
        raise
    finally:
        if worker:
            worker.stop()
        if pg:
            pg.stop()
        if not os.environ.get("SLUICE_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    M.run()
