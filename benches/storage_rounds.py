#!/usr/bin/env python3
"""Runs the storage benchmark's `raw` and `append` groups several times and prints the append
throughput as a ratio of the raw O_DIRECT bandwidth measured in the same round.

Why rounds: on a shared virtual disk the bandwidth drifts by ±30 % within minutes, so one run's
ratios mostly measure the drift. Each round measures the raw baselines right before the appends;
the table gives the median ratio over the rounds and the lowest.

Baselines (both shown): raw variants doing the device work the policy implies — fdatasync after
every 16 MiB for `always`, a concurrent fdatasync every 100 ms for `interval100ms`, none for
`never` (on a disk with a volatile write cache, no-sync writes run faster than synced ones).
  disk  = the fastest single-file raw variant of that kind: "the raw disk's O_DIRECT bandwidth".
  same  = the raw variant with the same pattern: as `disk`, but 8 files at once for 8p rows.

Paired mode (--paired): the drift is slow next to one benchmark but fast next to a round
(minutes), so each append row is measured right after its own baselines, one criterion run each,
and the order alternates between rounds (baselines first, then append first); every ratio comes
from one such pair.

Usage: benches/storage_rounds.py [--rounds N] [--filter REGEX] [--paired]
run-matrix.sh imports `baselines` and `target_of` from here for its storage table.
       (SLUICE_BENCH_DIR is passed through to the benchmark)
"""

import argparse
import json
import pathlib
import re
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRITERION = ROOT / "target" / "criterion"


def collect(groups):
    """{full_id: bytes per second} from criterion's JSON of the last run."""
    out = {}
    for g in groups:
        for bench in (CRITERION / g).glob("**/new/benchmark.json"):
            meta = json.loads(bench.read_text())
            est = json.loads((bench.parent / "estimates.json").read_text())
            nbytes = (meta.get("throughput") or {}).get("Bytes")
            if nbytes:
                out[meta["full_id"]] = nbytes / (est["mean"]["point_estimate"] / 1e9)
    return out


SYNC_KIND = {"always": "fdatasync_16MiB", "interval100ms": "fdatasync_100ms", "never": "nosync"}


def baseline_ids(row, raw_ids):
    """The raw ids an append row like append/1MiB/never/8p is divided by: (single-file ones
    with the same sync kind, the 8-file ones for 8p rows, else none)."""
    _, _, policy, parts = row.split("/")
    kind = SYNC_KIND.get(policy)
    if kind is None:
        return [], []
    same_kind = [k for k in raw_ids if f"_{kind}/" in k]
    one = [k for k in same_kind if not k.endswith("_8files")]
    eight = [k for k in same_kind if k.endswith("_8files")] if parts == "8p" else []
    return one, eight


def baselines(row, raw):
    """(disk, same) baseline bytes/s for an append row id, from {raw id: bytes/s}."""
    one, eight = baseline_ids(row, raw)
    if not one and not eight:
        return None, None
    disk = max(raw[k] for k in one) if one else None
    same = (max(raw[k] for k in eight) if eight else None) if row.endswith("/8p") else disk
    return disk, same


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--filter", default="raw|append")
    ap.add_argument("--paired", action="store_true")
    args = ap.parse_args()
    if args.paired:
        paired(args)
        return
    rounds = []
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}", file=sys.stderr, flush=True)
        cmd = ["cargo", "bench", "--bench", "storage", "--", "--noplot", args.filter]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        rounds.append(collect(["raw", "append"]))
    raw_ids = sorted({k for r in rounds for k in r if k.startswith("raw/")})
    rows = sorted({k for r in rounds for k in r if k.startswith("append/")}, key=sort_key)
    mib = 1024 * 1024
    lines = []
    lines.append("| benchmark | MiB/s per round | ÷ disk (median, min) | ÷ same (median, min) | target |")
    lines.append("|---|---|---|---|---|")
    for k in raw_ids:
        vals = " / ".join(f"{r[k] / mib:,.0f}" for r in rounds if k in r)
        lines.append(f"| `{k}` | {vals} | – | – | – |")
    for k in rows:
        vals, disk_r, same_r = [], [], []
        for r in rounds:
            if k not in r:
                continue
            raw = {x: v for x, v in r.items() if x.startswith("raw/")}
            disk, same = baselines(k, raw)
            vals.append(r[k] / mib)
            if disk:
                disk_r.append(r[k] / disk)
            if same:
                same_r.append(r[k] / same)
        target = target_of(k)
        verdict = "–"
        if target and disk_r:
            met = statistics.median(disk_r) >= target
            verdict = f"≥ {target:.0%}: " + ("met" if met else "**missed**")
        lines.append(
            f"| `{k}` | {' / '.join(f'{v:,.0f}' for v in vals)} | {fmt(disk_r)} | {fmt(same_r)} "
            f"| {verdict} |"
        )
    print("\n".join(lines))


def bench_binary():
    """Builds the storage bench once and returns its executable."""
    cmd = ["cargo", "bench", "--bench", "storage", "--no-run", "--message-format=json"]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    exe = None
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg["target"]["name"] == "storage":
            exe = msg["executable"]
    if exe is None:
        sys.exit("storage bench executable not found")
    return exe


def run_one(exe, bench_id):
    """Runs exactly `bench_id`; returns its bytes/s."""
    cmd = [exe, "--bench", "--noplot", "^" + re.escape(bench_id) + "$"]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    got = collect([bench_id.split("/")[0]])
    if bench_id not in got:
        sys.exit(f"{bench_id}: no result")
    return got[bench_id]


def paired(args):
    exe = bench_binary()
    listed = subprocess.run([exe, "--bench", "--list"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    ids = [line.split(":")[0] for line in listed.splitlines() if ":" in line]
    raw_ids = [k for k in ids if k.startswith("raw/")]
    rows = sorted({k for k in ids if k.startswith("append/") and re.search(args.filter, k)},
                  key=sort_key)
    rows = [r for r in rows if r.split("/")[2] in SYNC_KIND]
    mib = 1024 * 1024
    result = {r: [] for r in rows}  # row -> [(append, disk, same)]
    for i in range(args.rounds):
        for row in rows:
            print(f"round {i + 1}/{args.rounds}: {row}", file=sys.stderr, flush=True)
            one, eight = baseline_ids(row, raw_ids)
            base = one + eight
            order = base + [row] if i % 2 == 0 else [row] + base
            got = {b: run_one(exe, b) for b in order}
            disk, same = baselines(row, {b: got[b] for b in base})
            result[row].append((got[row], disk, same))
    lines = [
        f"Paired: {args.rounds} rounds; per pair the append row and its baselines back to back.",
        "",
        "| benchmark | append MiB/s per pair | disk MiB/s per pair | ÷ disk (median, min) "
        "| ÷ same (median, min) | target |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        pairs = result[row]
        disk_r = [a / d for a, d, _ in pairs]
        same_r = [a / s for a, _, s in pairs]
        target = target_of(row)
        verdict = "–"
        if target:
            met = statistics.median(disk_r) >= target
            verdict = f"≥ {target:.0%}: " + ("met" if met else "**missed**")
        lines.append(
            f"| `{row}` | {' / '.join(f'{a / mib:,.0f}' for a, _, _ in pairs)} "
            f"| {' / '.join(f'{d / mib:,.0f}' for _, d, _ in pairs)} "
            f"| {fmt(disk_r)} | {fmt(same_r)} | {verdict} |"
        )
    print("\n".join(lines))


def fmt(ratios):
    if not ratios:
        return "–"
    return f"{statistics.median(ratios):.0%} ({min(ratios):.0%})"


def target_of(row):
    _, _, policy, parts = row.split("/")
    if policy == "always":
        return 0.5 if parts == "8p" else None
    return 0.8


def sort_key(row):
    m = re.match(r"append/(\d+)(\w+)/(\w+)/(\d+)p", row)
    if not m:
        return (row,)
    size = int(m.group(1)) * (1024 if m.group(2) == "MiB" else 1)
    order = {"always": 0, "interval100ms": 1, "never": 2}.get(m.group(3), 3)
    return (size, order, int(m.group(4)))


if __name__ == "__main__":
    main()
