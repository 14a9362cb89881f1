"""The local executor's sandbox: what it costs to start a job, next to the unsandboxed start.

Run as root (docs/benchmarks.md records the results and the exact command):

    .venv/bin/python benchmarks/bench_sandbox.py --starts 50 [--json]
    .venv/bin/python benchmarks/bench_sandbox.py --cpu 300 [--modes shared-user,sandbox]

For each mode (``shared-user``: what ``--unsafe-shared-user`` does; ``rlimits``: the sandbox
with every limit an rlimit, ``Sandbox(cgroups=False)``, the sandbox as it was before per-run
cgroups; ``sandbox``: per-tenant account, bubblewrap, the run's own cgroup where the host has
one (the default); ``network``: the sandbox for a job with ``network: true``, its
outbound-only network made by slirp4netns first), ``--starts`` times, the modes taking turns
(one start of each, then the next round: a loaded machine's drift hits all modes alike):
``submit`` a job whose command writes the wall clock (``date +%s%N``) to its directory, and
take the time from just before ``submit`` to that instant: the executor's bookkeeping, the
start of the wrapper and (in the sandbox) the account lookup, ``chown`` of the run's
directories, making the run's cgroup and joining it, ``prlimit``, ``bwrap`` setting up its
namespaces and mounts and ``setpriv`` dropping to the account, up to the job's first
command. The tenant's account exists already (made by a first, untimed job of each mode), as
for any tenant's second job. Reported: the median and 90th percentile in ms per mode, and
the differences of the medians (``sandbox`` - ``shared-user``: the sandbox's cost;
``sandbox`` - ``rlimits``: the cgroup's; ``network`` - ``sandbox``).

``--cpu N``: what a job costs the machine rather than how long it takes to start: N jobs
submitted back to back and run to their end, the machine's busy CPU per job and the part of it
that is not this process's (the job's own processes and the kernel's work for them); 3 repeats
per mode, one JSON line. Only meaningful on an otherwise quiet machine.
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
from collections.abc import Callable
from pathlib import Path

from suanwang.executors import LocalExecutor, Submission
from suanwang.executors.local import Sandbox, SharedUser

#: mode -> (its sandbox, made when used: ``--modes shared-user,sandbox`` runs on the commits
#: before ``Sandbox.cgroups`` too, for a side-by-side run; whether its jobs ask for network)
MODES: dict[str, tuple[Callable[[], Sandbox | SharedUser], bool]] = {
    "shared-user": (SharedUser, False),
    "rlimits": (lambda: Sandbox(cgroups=False), False),
    "sandbox": (Sandbox, False),
    "network": (lambda: Sandbox(allow_network=True), True),
}


def _start(ex: LocalExecutor, root: Path, job: str, network: bool) -> float:
    """One job's start, ms; returns once it has ended (one start at a time)."""
    t0 = time.time_ns()
    ref = ex.submit(
        Submission(job, job, "date +%s%N > t", None, tenant="bench-tenant", network=network)
    )
    stamp = root / "bench" / job / "work" / "t"
    while not (text := _read(stamp)):
        time.sleep(0.0005)
    while not ex.poll([ref])[ref].state.is_terminal:
        time.sleep(0.005)
    return (int(text) - t0) / 1e6


def _starts(modes: list[str], top: Path, n: int) -> dict[str, list[float]]:
    executors = {}
    for name in modes:
        make, network = MODES[name]
        executors[name] = LocalExecutor(top / name, "bench", cpus=1, cards=0, sandbox=make())
        _start(executors[name], top / name, "j0", network)  # makes the account: not timed
    took: dict[str, list[float]] = {name: [] for name in modes}
    try:
        for i in range(1, n + 1):
            for name in modes:
                took[name].append(_start(executors[name], top / name, f"j{i}", MODES[name][1]))
    finally:  # the executors' cgroup parents (empty now: every run's cgroup went with it)
        for ex in executors.values():
            _rmdir_cgroups(ex)
    return took


def _busy_s() -> float:
    """CPU seconds the whole machine has been busy (``/proc/stat``: all but idle and iowait)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _cpu(modes: list[str], top: Path, n: int, repeats: int) -> dict[str, list[dict[str, float]]]:
    """Per mode and repeat (the modes taking turns): ``n`` jobs (``true``) submitted back to
    back to an executor with room for all, polled every 0.1 s until every one has ended. The
    machine's busy CPU over that time per job, this process's share (the executor's
    bookkeeping: submissions and polls) and the rest: the job's own processes (wrapper,
    sandbox, command) and the kernel's work for them. Needs an otherwise quiet machine."""
    out: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
    for r in range(repeats):
        for name in modes:
            make, network = MODES[name]
            root = top / f"{name}-cpu{r}"
            ex = LocalExecutor(root, "bench", cpus=n, cards=0, sandbox=make())
            _start(ex, root, "j0", network)  # makes the account: not counted
            busy, own = _busy_s(), time.process_time()
            subs = [
                Submission(f"c{i}", "c", "true", None, tenant="bench-tenant", network=network)
                for i in range(n)
            ]
            refs = [ex.submit(sub) for sub in subs]
            while not all(s.state.is_terminal for s in ex.poll(refs).values()):
                time.sleep(0.1)
            machine_ms = (_busy_s() - busy) / n * 1000
            own_ms = (time.process_time() - own) / n * 1000
            out[name].append({"machine_ms": round(machine_ms, 1), "executor_ms": round(own_ms, 1),
                              "job_ms": round(machine_ms - own_ms, 1)})  # fmt: skip
            _rmdir_cgroups(ex)
    return out


def _rmdir_cgroups(ex: LocalExecutor) -> None:
    cgroups = getattr(ex, "cgroups", None)  # None before per-run cgroups
    for parent in {cgroups.memory, cgroups.pids} if cgroups else ():
        if parent is not None:
            parent.rmdir()


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
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}"
    )
    parser.add_argument(
        "--cpu",
        type=int,
        default=0,
        metavar="N",
        help="instead: the machine's CPU per job for N jobs submitted back to back (3 repeats)",
    )
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - set(MODES):
        sys.exit(f"--modes: choose from {', '.join(MODES)}")
    if os.geteuid() != 0:
        sys.exit("run as root: the sandbox needs it")
    if args.cpu > 0:
        with tempfile.TemporaryDirectory() as top:
            cpu = _cpu(modes, Path(top), args.cpu, repeats=3)
        medians = {
            name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            for name, runs in cpu.items()
        }
        print(json.dumps({"jobs": args.cpu, "runs": cpu, "medians": medians}))
        return
    with tempfile.TemporaryDirectory() as top:
        took = _starts(modes, Path(top), args.starts)
    results: dict[str, dict[str, float]] = {
        name: {
            "median_ms": round(statistics.median(t), 1),
            "p90_ms": round(statistics.quantiles(t, n=10)[-1], 1),
        }
        for name, t in took.items()
    }
    costs = {"sandbox_cost_ms": ("sandbox", "shared-user"),
             "cgroup_cost_ms": ("sandbox", "rlimits"),
             "network_cost_ms": ("network", "sandbox")}  # fmt: skip
    for key, (a, b) in costs.items():
        if a in results and b in results:
            results[key] = {"median": round(results[a]["median_ms"] - results[b]["median_ms"], 1)}
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}"
    if args.json:
        print(json.dumps({"machine": machine, "starts": args.starts, **results}))
        return
    print(f"{machine}; {args.starts} starts per mode, the modes taking turns")
    for name in modes:
        r = results[name]
        print(f"{name:12} median {r['median_ms']:7.1f} ms   p90 {r['p90_ms']:7.1f} ms")
    for key in costs:
        if key in results:
            print(f"{key}: {results[key]['median']:.1f} ms per start (median)")


if __name__ == "__main__":
    main()
