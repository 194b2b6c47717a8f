"""Shared harness of the Python client-matrix scripts.

Each script builds a `Matrix(client, prefix)`, registers scenarios with `@m.scenario` (plain or
`async` functions), and ends with `m.run()`: arguments are `BOOTSTRAP [scenario...]`, each
scenario prints `PASS|FAIL <client> <name> (secs)`, and the exit status is 1 if any failed.
Every async scenario is bounded by `timeout_s`.
"""
import asyncio
import inspect
import logging
import os
import sys
import time
import traceback
import uuid

BOOT = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"

# DescribeConfigs config_source values (KIP-226).
SOURCE_DYNAMIC_TOPIC = 1
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Matrix:
    def __init__(self, client, prefix, timeout_s):
        self.client = client
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.scenarios = []

    def scenario(self, fn):
        self.scenarios.append(fn)
        return fn

    def fresh(self, tag):
        """A topic or group name no earlier run used."""
        return "%s-%s-%s" % (self.prefix, tag, uuid.uuid4().hex[:10])

    def _call(self, fn):
        if inspect.iscoroutinefunction(fn):
            asyncio.run(asyncio.wait_for(fn(), self.timeout_s))
        else:
            fn()

    def run(self):
        logging.basicConfig(
            level=logging.DEBUG if os.environ.get("MATRIX_DEBUG") else logging.CRITICAL,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
        wanted = set(sys.argv[2:])
        failed = []
        for fn in self.scenarios:
            if wanted and fn.__name__ not in wanted:
                continue
            start = time.monotonic()
            try:
                self._call(fn)
                print("PASS %s %s (%.1fs)" % (self.client, fn.__name__, time.monotonic() - start), flush=True)
            except Exception:
                traceback.print_exc()
                print("FAIL %s %s (%.1fs)" % (self.client, fn.__name__, time.monotonic() - start), flush=True)
                failed.append(fn.__name__)
        if failed:
            print("%s: failed scenarios: %s" % (self.client, " ".join(failed)), flush=True)
            sys.exit(1)
