"""A run's processes: the wrapper script, starting it detached, finding a run's processes in
``/proc`` (by pid and start time, or by the run's token) and signalling them."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from suanwang.executors.local.rundir import read_bytes, read_json

ENV_RUN_TOKEN = "SUANWANG_RUN_TOKEN"
DEAD = frozenset({"Z", "X", "x"})  # zombie or dead: the process has ended

WRAPPER = """#!/bin/sh
# Written by suanwang's LocalExecutor: runs the job, then records its exit code atomically.
# The checkpoint signal is for the job; the wrapper only survives it (a caught signal is reset
# to its default in the job, so the job may trap it).
trap : USR1
cd {work} || exit 1
{watchdog}{launch}
code=$?
{unwatch}echo "$code" > {exit_tmp} && mv -f {exit_tmp} {exit_code}
"""

#: The lease watchdog of a run (``LocalExecutor(lease_s=...)``), started by the wrapper before
#: the job: once a second it checks the age of the run's lease file, which every poll that sees
#: the run alive touches; past the lease it marks the run fenced and kills the run's whole
#: process group (the wrapper too: no exit code is recorded). It ignores the checkpoint signal
#: the group gets (a cancel's SIGTERM ends it with the rest); the wrapper kills it when the job
#: ends.
WATCHDOG = """pgid=$(cut -d' ' -f5 /proc/$$/stat)
( trap '' USR1; while sleep 1; do
    age=$(( $(date +%s) - $(stat -c %Y {lease} 2>/dev/null || echo 0) ))
    if [ "$age" -gt {limit} ]; then
      echo "suanwang: no word from the platform for $age s (lease {limit} s): stopping this run"
      date -u +%Y-%m-%dT%H:%M:%S+00:00 > {fenced}
      kill -KILL -"$pgid"; exit 0
    fi
  done ) &
watchdog=$!
"""
UNWATCH = 'kill -KILL "$watchdog" 2>/dev/null\n'


@dataclass(frozen=True, slots=True)
class Proc:
    """The wrapper process of a launched run."""

    pid: int
    pgid: int
    start_ticks: int  # /proc/<pid>/stat field 22; -1: had already ended when we looked


def read_proc(run: Path) -> Proc | None:
    data = read_json(run / "pid")
    return Proc(**data) if data is not None else None


def spawn_wrapper(run: Path, env: dict[str, str]) -> Proc:
    """Start the run's wrapper (``run.sh``, output to ``stdout.log``) in the background of a
    short-lived ``sh`` in a new session, so that it is never our child. Raises ``OSError``,
    ``ValueError`` or ``subprocess.SubprocessError`` if it could not be started."""
    q = shlex.quote
    starter = f"/bin/sh {q(str(run / 'run.sh'))} >>{q(str(run / 'stdout.log'))} 2>&1 & echo $!"
    with subprocess.Popen(
        ["/bin/sh", "-c", starter],
        cwd=run,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as starter_proc:
        out, _ = starter_proc.communicate(timeout=30)
    pid = int(out.strip())
    stat = proc_stat(pid)
    return Proc(pid, starter_proc.pid, stat[2] if stat else -1)


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, pgrp, start_ticks)`` of a process, or None if there is none."""
    data = read_bytes(Path(f"/proc/{pid}/stat"))
    if not data:
        return None
    # the command name (field 2) may contain spaces and ')': split after its last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[2]), int(fields[19])


def alive(proc: Proc) -> bool:
    """The wrapper is running: same pid *and* start time (pids are reused), not a zombie."""
    stat = proc_stat(proc.pid)
    return stat is not None and stat[0] not in DEAD and stat[2] == proc.start_ticks


def with_token(token: str, pgid: int | None) -> list[int]:
    """Live processes (of process group ``pgid`` if given) whose environment holds ``token``.

    With ``pgid``, a group that has no process left answers at once (``killpg`` with signal
    0): the common case, a run whose wrapper and job have ended, costs one system call instead
    of reading every process of the host (with hundreds of runs, that scan was most of the
    time a dispatcher spent handing jobs to this executor: ``benchmarks/bench_e2e.py``).
    """
    if not token:
        return []
    if pgid is not None and pgid > 0:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []  # no process in the group, token or not
        except PermissionError:
            pass  # some process is in it (another user's): look at them
    entry = f"{ENV_RUN_TOKEN}={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        stat = proc_stat(pid)
        if stat is None or stat[0] in DEAD or (pgid is not None and stat[1] != pgid):
            continue
        if entry in read_bytes(Path(f"/proc/{pid}/environ")).split(b"\0"):
            found.append(pid)
    return found


def run_processes(proc: Proc | None, token: str) -> list[int]:
    """Live processes of a run: they carry its token (and are in its process group if known)."""
    return with_token(token, pgid=proc.pgid if proc is not None else None)


def signal_all(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
