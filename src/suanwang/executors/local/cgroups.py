"""A run's own cgroup: its memory and processes limited by the kernel, where the host lets us.

Where a writable cgroup hierarchy with the ``memory`` (and ``pids``) controller exists, every
run of the local executor gets a cgroup of its own, ``run-<run id>``, under a parent of the
executor's, ``suanwang-<12 hex digits of the SHA-256 of the executor's directory>`` at the top
of the hierarchy (so that executors on other roots, and other sessions, never meet ours):

* cgroup v1 (a ``memory`` and a ``pids`` hierarchy, as on this machine): ``memory.limit_in_bytes``
  (and ``memory.memsw.limit_in_bytes``, memory plus swap, where it exists) = the job's memory,
  ``pids.max`` = the process limit;
* cgroup v2 (the unified hierarchy at ``/sys/fs/cgroup`` with ``memory`` and ``pids`` enabled
  for its children): ``memory.max``, ``memory.swap.max = 0`` and ``pids.max``, the same numbers.

The job's first process joins the cgroup (it writes ``0``, itself, to each ``cgroup.procs``:
:data:`JOIN`) before it runs anything else, so all it starts is inside. A job over its memory
is killed by the kernel's OOM killer (counted in ``memory.oom_control`` or ``memory.events``:
:meth:`RunCgroups.ended`); a fork past ``pids.max`` fails (counted in ``pids.events``).

The cgroup is removed when the run is finalized (what is left in it is killed first), and
cgroups of runs that are no longer active are removed when an executor starts
(:meth:`RunCgroups.clean`). Nothing outside our parent is ever written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Where cgroup hierarchies are mounted.
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: The prefix of a run's cgroup (a job id such as ``cgroup.procs`` would clash with a file).
RUN_PREFIX = "run-"
#: Run before the job (``sh -c JOIN sh <n> <procs file>… <program…>``): the shell moves itself
#: into each cgroup, then becomes the job; if it cannot, the job does not run.
JOIN = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo 0 >"$1" || '
    '{ echo "suanwang: could not join the run\'s cgroup $1" >&2; exit 125; }; '
    'shift; n=$((n - 1)); done; exec "$@"'
)
#: How long removing a cgroup waits for its killed processes to go.
REMOVE_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class Ended:
    """What a run's cgroups saw: kills by the OOM killer, forks refused by ``pids.max``."""

    oom_kills: int = 0
    forks_refused: int = 0


@dataclass(frozen=True, slots=True)
class RunCgroups:
    """The parents under which an executor makes its runs' cgroups (v1: one per controller;
    v2: the same directory twice). ``None``: that limit stays an rlimit."""

    version: int
    memory: Path | None
    pids: Path | None

    @classmethod
    def detect(cls, key: str, root: Path = CGROUP_ROOT) -> tuple[RunCgroups | None, str]:
        """The executor's cgroups (``key``: what names its parent) and a line for the log
        saying which limits they hold; ``None`` if none can be used here."""
        parent = "suanwang-" + hashlib.sha256(key.encode()).hexdigest()[:12]
        if "memory" in _words(root / "cgroup.controllers"):
            found = _v2(root, parent)
        else:
            found = cls(
                1, _v1(root / "memory", parent, _V1_MEMORY), _v1(root / "pids", parent, _V1_PIDS)
            )
        if found is None or (found.memory is None and found.pids is None):
            return None, "no writable cgroup memory or pids controller here: rlimits only"
        held = [w for w, p in (("memory", found.memory), ("processes", found.pids)) if p]
        return found, (
            f"cgroup v{found.version} limits {' and '.join(held)} per run "
            f"(under {found.memory or found.pids})"
        )

    def procs(self, run: str) -> list[Path]:
        """The ``cgroup.procs`` files the run's first process joins."""
        parents = dict.fromkeys(p for p in (self.memory, self.pids) if p is not None)
        return [parent / (RUN_PREFIX + run) / "cgroup.procs" for parent in parents]

    def create(self, run: str, memory_bytes: int, max_processes: int) -> None:
        """Make the run's cgroups with their limits (again, if they exist). Raises
        ``OSError``."""
        for parent, settings in self._settings(memory_bytes, max_processes):
            path = parent / (RUN_PREFIX + run)
            if not parent.is_dir():  # an empty parent may be removed by anyone: make it again
                parent.mkdir(exist_ok=True)
                if self.version == 2:
                    (parent / "cgroup.subtree_control").write_text("+memory +pids")
            path.mkdir(exist_ok=True)
            for name, value in settings:
                (path / name).write_text(value)

    def ended(self, run: str) -> Ended:
        """What the run's cgroups counted (zeros if they are gone)."""
        oom = forks = 0
        if self.memory is not None:
            events = "memory.events" if self.version == 2 else "memory.oom_control"
            oom = _count(self.memory / (RUN_PREFIX + run) / events, "oom_kill")
        if self.pids is not None:
            forks = _count(self.pids / (RUN_PREFIX + run) / "pids.events", "max")
        return Ended(oom, forks)

    def remove(self, run: str) -> bool:
        """Kill what is left in the run's cgroups and remove them; False if one is still there
        (its processes did not go in time)."""
        gone = True
        for parent in dict.fromkeys(p for p in (self.memory, self.pids) if p is not None):
            gone = _remove(parent / (RUN_PREFIX + run)) and gone
        return gone

    def clean(self, active: Callable[[str], bool]) -> list[str]:
        """Remove the cgroups of runs that are not ``active`` (left by a crash); their names."""
        stale: list[str] = []
        for parent in dict.fromkeys(p for p in (self.memory, self.pids) if p is not None):
            with contextlib.suppress(OSError):
                for entry in parent.iterdir():
                    run = entry.name.removeprefix(RUN_PREFIX)
                    ours = entry.is_dir() and entry.name != run and not active(run)
                    if ours and _remove(entry) and run not in stale:
                        stale.append(run)
        return stale

    def _settings(
        self, memory_bytes: int, max_processes: int
    ) -> list[tuple[Path, list[tuple[str, str]]]]:
        out: list[tuple[Path, list[tuple[str, str]]]] = []
        if self.memory is not None:
            mem = str(memory_bytes)
            if self.version == 2:
                out.append((self.memory, [("memory.max", mem), ("memory.swap.max", "0")]))
            else:
                settings = [("memory.limit_in_bytes", mem)]
                if (self.memory / "memory.memsw.limit_in_bytes").exists():
                    settings.append(("memory.memsw.limit_in_bytes", mem))  # no swap beyond it
                out.append((self.memory, settings))
        if self.pids is not None:
            out.append((self.pids, [("pids.max", str(max_processes))]))
        return out


_V1_MEMORY = ("memory.limit_in_bytes", "memory.oom_control")
_V1_PIDS = ("pids.max", "pids.events")


def _v1(hierarchy: Path, parent: str, files: Sequence[str]) -> Path | None:
    """Our parent in a v1 hierarchy, made if missing, if a child of it gets ``files``."""
    if not (hierarchy / "cgroup.procs").exists():
        return None
    path = hierarchy / parent
    return path if _probe(path, files) else None


def _v2(root: Path, parent: str) -> RunCgroups | None:
    """Our parent in the unified hierarchy, with memory and pids enabled for its children."""
    if not {"memory", "pids"} <= _words(root / "cgroup.subtree_control"):
        return None
    path = root / parent
    try:
        path.mkdir(exist_ok=True)
        (path / "cgroup.subtree_control").write_text("+memory +pids")
    except OSError:
        return None
    ok = _probe(path, ("memory.max", "memory.events", "pids.max", "pids.events"))
    return RunCgroups(2, path, path) if ok else None


def _probe(path: Path, files: Sequence[str]) -> bool:
    """Whether a cgroup can be made under ``path`` (made if missing) and has ``files``."""
    probe = path / f"probe-{os.getpid()}"
    try:
        path.mkdir(exist_ok=True)
        probe.mkdir(exist_ok=True)
        try:
            return all((probe / f).exists() for f in files)
        finally:
            probe.rmdir()
    except OSError:
        return False


def _remove(path: Path) -> bool:
    deadline = time.monotonic() + REMOVE_WAIT_S
    while True:
        try:
            pids = (path / "cgroup.procs").read_text().split()
        except FileNotFoundError:
            return True
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)


def _words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def _count(path: Path, key: str) -> int:
    """The number after ``key`` in a flat-keyed cgroup file (0 if it is not there)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0
