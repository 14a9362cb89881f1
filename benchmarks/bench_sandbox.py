"""The local executor's sandbox: what it costs to start a job, next to the unsandboxed start.

Run as root (docs/benchmarks.md records the results and the exact command):

    .venv/bin/python benchmarks/bench_sandbox.py --starts 50 [--json]

For each mode (``sandbox``: per-tenant account, bubblewrap, rlimits; ``shared-user``: what
``--unsafe-shared-user`` does; ``network``: the sandbox for a job with ``network: true``, its
outbound-only network made by slirp4netns first), ``--starts`` times, one after the other:
``submit`` a job whose command writes the wall clock (``date +%s%N``) to its directory, and
take the time from just before ``submit`` to that instant: the executor's bookkeeping, the
start of the wrapper and (in the sandbox) the account lookup, ``chown`` of the run's
directories, ``prlimit``, ``bwrap`` setting up its namespaces and mounts and ``setpriv``
dropping to the account, up to the job's first command. The tenant's account exists already
(made by a first, untimed job), as for any tenant's second job. Reported: the median and 90th
percentile in ms per mode, and the difference of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from suanwang.executors import LocalExecutor, Submission
from suanwang.executors.local import Sandbox, SharedUser


def _starts(sandbox: Sandbox | SharedUser, root: Path, n: int, network: bool) -> list[float]:
    ex = LocalExecutor(root, "bench", cpus=1, cards=0, sandbox=sandbox)
    took = []
    for i in range(-1, n):  # the first start (-1) makes the account: not timed
        job = f"j{i + 1}"
        t0 = time.time_ns()
        ref = ex.submit(
            Submission(job, job, "date +%s%N > t", None, tenant="bench-tenant", network=network)
        )
        stamp = root / "bench" / job / "work" / "t"
        while not (text := _read(stamp)):
            time.sleep(0.0005)
        while not ex.poll([ref])[ref].state.is_terminal:  # one start at a time
            time.sleep(0.005)
        if i >= 0:
            took.append((int(text) - t0) / 1e6)
    return took


def _read(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError:
        return ""
    return text if text.endswith("\n") else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=50, help="job starts per mode")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the sandbox needs it")
    results = {}
    with tempfile.TemporaryDirectory() as top:
        modes = (
            ("shared-user", SharedUser(), False),
            ("sandbox", Sandbox(), False),
            ("network", Sandbox(allow_network=True), True),
        )
        for name, sandbox, network in modes:
            took = _starts(sandbox, Path(top) / name, args.starts, network)
            results[name] = {
                "median_ms": round(statistics.median(took), 1),
                "p90_ms": round(statistics.quantiles(took, n=10)[-1], 1),
            }
    results["sandbox_cost_ms"] = {
        "median": round(results["sandbox"]["median_ms"] - results["shared-user"]["median_ms"], 1)
    }
    results["network_cost_ms"] = {
        "median": round(results["network"]["median_ms"] - results["sandbox"]["median_ms"], 1)
    }
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}"
    if args.json:
        print(json.dumps({"machine": machine, "starts": args.starts, **results}))
        return
    print(f"{machine}; {args.starts} starts per mode")
    for name in ("shared-user", "sandbox", "network"):
        r = results[name]
        print(f"{name:12} median {r['median_ms']:7.1f} ms   p90 {r['p90_ms']:7.1f} ms")
    print(f"sandbox cost: {results['sandbox_cost_ms']['median']:.1f} ms per start (median)")
    print(f"network cost: {results['network_cost_ms']['median']:.1f} ms more per start (median)")


if __name__ == "__main__":
    main()
