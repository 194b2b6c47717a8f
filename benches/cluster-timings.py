#!/usr/bin/env python3
"""Cluster timings on this machine: three release nodes on loopback (scripts/cluster.sh),
default flags unless given. Measures, with the sluice CLI and raw Metadata polls:

  - CreateTopics latency sent to the active controller and to a follower (forwarded),
  - how long until a topic created through one node is in every node's Metadata,
  - how long after SIGKILL of the active controller the others name a new one.

Usage: benches/cluster-timings.py [ROUNDS] [-- extra sluice flags]
Prints one line per measurement and medians; numbers are wall-clock on a shared machine.
"""
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.environ.get(
    "SLUICE_BIN",
    os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release/sluice"),
)
BASE = int(os.environ.get("BASE_PORT", "19400"))
args = sys.argv[1:]
extra = []
if "--" in args:
    extra = args[args.index("--") + 1:]
    args = args[: args.index("--")]
ROUNDS = int(args[0]) if args else 5


def kafka(i):
    return f"127.0.0.1:{BASE + 2 * i}"


def metadata_topics_and_controller(addr):
    """Metadata v1 over a raw socket: (controller id, set of topic names)."""
    client = b"timings"
    body = struct.pack(">hhih", 3, 1, 7, len(client)) + client + struct.pack(">i", -1)
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        n = struct.unpack(">i", recv(s, 4))[0]
        data = recv(s, n)
    at = 4  # correlation id
    (brokers,) = struct.unpack_from(">i", data, at)
    at += 4
    for _ in range(brokers):
        at += 4
        (hl,) = struct.unpack_from(">h", data, at)
        at += 2 + hl + 4
        (rl,) = struct.unpack_from(">h", data, at)
        at += 2 + max(rl, 0)
    (controller,) = struct.unpack_from(">i", data, at)
    at += 4
    (topics,) = struct.unpack_from(">i", data, at)
    at += 4
    names = set()
    for _ in range(topics):
        at += 2
        (nl,) = struct.unpack_from(">h", data, at)
        names.add(data[at + 2: at + 2 + nl].decode())
        at += 2 + nl + 1
        (parts,) = struct.unpack_from(">i", data, at)
        at += 4
        for _ in range(parts):
            at += 2 + 4 + 4
            for _ in range(2):
                (k,) = struct.unpack_from(">i", data, at)
                at += 4 + 4 * max(k, 0)
    return controller, names


def recv(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise OSError("closed")
        out += chunk
    return out


def poll(what, check, limit_s=30):
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        try:
            if check():
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.002)
    raise SystemExit(f"timed out: {what}")


def cli(*a):
    return subprocess.run([BIN, *a], check=True, capture_output=True, text=True).stdout


def main():
    d = tempfile.mkdtemp(prefix="sluice-cluster-timings-")
    env = dict(os.environ, CLUSTER_DIR=d, BASE_PORT=str(BASE), SLUICE_BIN=BIN)
    subprocess.run([os.path.join(ROOT, "scripts/cluster.sh"), "start", *extra], check=True, env=env, stdout=subprocess.DEVNULL)
    try:
        info = json.loads(cli("cluster", "info", "--bootstrap", kafka(0), "--format", "json"))
        leader = info["controller_id"]
        follower = (leader + 1) % 3
        create = {"controller": [], "follower": []}
        visible = []
        for r in range(ROUNDS):
            for role, node in (("controller", leader), ("follower", follower)):
                name = f"t-{role}-{r}"
                t0 = time.monotonic()
                cli("topic", "create", name, "--partitions", "3", "--bootstrap", kafka(node))
                create[role].append(time.monotonic() - t0)
                others = [i for i in range(3) if i != node]
                visible.append(poll(f"{name} everywhere", lambda: all(name in metadata_topics_and_controller(kafka(i))[1] for i in others)))
        for role, xs in create.items():
            print(f"CreateTopics (3 partitions) sent to the {role}: median {statistics.median(xs) * 1000:.1f} ms over {len(xs)} (CLI process start included)")
        print(f"topic in every other node's Metadata after CreateTopics returned: median {statistics.median(visible) * 1000:.1f} ms, max {max(visible) * 1000:.1f} ms")
        pid = int(open(os.path.join(d, f"n{leader}.pid")).read())
        os.kill(pid, signal.SIGKILL)
        others = [i for i in range(3) if i != leader]
        elected = poll("a new controller", lambda: all(metadata_topics_and_controller(kafka(i))[0] not in (leader, -1) for i in others))
        print(f"SIGKILL of the active controller {leader}: both others name a new one after {elected * 1000:.0f} ms")
        # The killed node comes back so `stop` finds every node.
        subprocess.run([os.path.join(ROOT, "scripts/cluster.sh"), "start", *extra], check=True, env=env, stdout=subprocess.DEVNULL)
    finally:
        subprocess.run([os.path.join(ROOT, "scripts/cluster.sh"), "stop"], env=env, stdout=subprocess.DEVNULL)


main()
