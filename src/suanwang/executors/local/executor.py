"""The local executor: submit, poll, cancel, checkpoint and resume runs of one center, under
its slot limits, with every fact in the run directories (see the package's docstring)."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from suanwang.core.lifecycle import JobState
from suanwang.executors.base import (
    CENTER,
    CHECKPOINT_EXIT_CODE,
    CHECKPOINT_SIGNAL,
    LEASE,
    USAGE_FILE_NAME,
    Capacity,
    ExecutorError,
    ExecutorStatus,
    RunUsage,
    Submission,
    job_env,
    read_log,
    read_usage_file,
    usage_file,
)
from suanwang.executors.limits import limit_hit, parse_record
from suanwang.executors.local.cgroups import Ended, RunCgroups
from suanwang.executors.local.processes import (
    ENV_RUN_TOKEN,
    UNWATCH,
    WATCHDOG,
    WRAPPER,
    Proc,
    alive,
    proc_stat,
    read_proc,
    run_processes,
    signal_all,
    spawn_wrapper,
    with_token,
)
from suanwang.executors.local.rundir import (
    age_s,
    base_run,
    now,
    read_bytes,
    read_int,
    read_json,
    read_time,
    run_token,
    status_from,
    write_atomic,
)
from suanwang.executors.local.sandbox import (
    Account,
    Sandbox,
    SandboxUnavailable,
    SharedUser,
    give,
    give_tree,
)

#: Variables passed from the server's environment to jobs. Nothing else is: the server's
#: environment holds secrets (database url, keys) that are none of a job's business.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME")

#: The run's lease (touched by every poll that sees it alive) and the mark its watchdog leaves
#: when the lease ran out and it stopped the run.
LEASE_FILE = "lease"
FENCED_FILE = "fenced"
#: The limits a sandboxed run runs under (:meth:`~suanwang.executors.limits.Limits.record`).
LIMITS_FILE = "limits"
#: How much of a failed run's log is read for the limit it ran into.
_LIMIT_LOG_TAIL = 4096

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,150}")


class LocalExecutor:
    """Runs jobs as local processes for one center, at most ``cpus`` cores and ``cards`` cards.

    A job that does not fit now waits in the executor's queue (state ``scheduled``) and starts,
    in submission order, at a later ``submit``/``poll``/``capacity`` call once slots are free.
    A job that could never fit is refused at submit (:class:`ExecutorError`). ``cancel`` sends
    SIGTERM to the run's process group and SIGKILL after ``kill_grace_s``.

    ``sandbox`` (default: :class:`~suanwang.executors.local.sandbox.Sandbox` with its defaults)
    runs every job as an unprivileged account in namespaces, its memory limited to its
    ``mem_gb`` (by a cgroup of the run's own where the host has one, detected here and logged:
    :mod:`~suanwang.executors.local.cgroups`); the executor refuses to start
    (:class:`SandboxUnavailable`) where that cannot be done (not root, no ``bwrap``).
    :class:`SharedUser` runs jobs as the server's own user (``--unsafe-shared-user``:
    dangerous). ``accelerator`` is not enforced.
    """

    def __init__(
        self,
        root: Path,
        center_id: str,
        cpus: int,
        cards: int,
        *,
        kill_grace_s: float = 5.0,
        launch_grace_s: float = 5.0,
        sandbox: Sandbox | SharedUser = Sandbox(),  # noqa: B008 (frozen: shared safely)
        lease_s: float | None = None,
    ) -> None:
        if not _SAFE_ID.fullmatch(center_id):
            raise ValueError(f"center_id {center_id!r}: use letters, digits, '_', '.', '-'")
        if cpus < 0 or cards < 0:
            raise ValueError(f"slots must be >= 0 (got cpus={cpus}, cards={cards})")
        self.name = f"local:{center_id}"
        self.stop_grace_s = 0.0  # a process this executor reports lost is gone
        #: runs started from now on stop themselves once no poll has seen them alive for this
        #: long (None: they never do); see :data:`~.processes.WATCHDOG`
        self.lease_s = lease_s
        self._sizes: dict[str, tuple[int, int]] = {}  # run -> (cpus, cards): see _size
        #: runs seen launched and not finalized, while they are on the active index: a
        #: submission's tick counts them without looking at their files again (see _tick)
        self._launched: set[str] = set()
        self.center_id = center_id
        self.cpus = cpus
        self.cards = cards
        self.kill_grace_s = kill_grace_s
        self.launch_grace_s = launch_grace_s
        if isinstance(sandbox, Sandbox):
            sandbox.check()
        self.sandbox = sandbox
        self._dir = Path(root).resolve() / center_id
        self._active = self._dir / ".active"
        self._active.mkdir(parents=True, exist_ok=True)
        self.cgroups: RunCgroups | None = None
        if isinstance(sandbox, Sandbox):
            how = "cgroups off: rlimits only"
            if sandbox.cgroups:
                self.cgroups, how = RunCgroups.detect(str(self._dir))
            log.info("%s: job limits: %s; CPU time and file size by rlimits", self.name, how)
        with self._locked():
            # half-written submissions of a crashed server: never visible, never started
            for tmp in self._dir.glob(".tmp-*"):
                shutil.rmtree(tmp, ignore_errors=True)
            if self.cgroups is not None:  # cgroups of runs that ended while no executor ran
                stale = self.cgroups.clean(lambda run: (self._active / run).exists())
                if stale:
                    log.info("%s: removed the cgroups of ended runs %s", self.name, stale)

    # ------------------------------------------------------------------ protocol

    def submit(self, sub: Submission) -> str:
        return self._submit(sub, base_run(sub), resume_from=None)

    def resume(self, sub: Submission, checkpoint_dir: str) -> str:
        path = Path(checkpoint_dir).resolve()
        if not path.is_dir():
            raise ExecutorError(self.name, f"cannot resume {sub.job_id}: no directory {path}")
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
        return self._submit(sub, f"{base_run(sub)}.resume-{digest}", resume_from=str(path))

    def poll(self, refs: Sequence[str]) -> dict[str, ExecutorStatus]:
        """Statuses of ``refs``; with a lease, every run seen alive gets its lease renewed."""
        with self._locked():
            self._tick()
            out = {ref: self._status(ref) for ref in refs}
            if self.lease_s is not None:
                for ref, status in out.items():
                    if status.state is JobState.RUNNING:
                        with contextlib.suppress(OSError, ExecutorError):
                            os.utime(self._run_dir(ref) / LEASE_FILE, follow_symlinks=False)
            return out

    def cancel(self, ref: str) -> None:
        with self._locked():
            run = self._run_dir(ref)
            if (run / "final.json").exists():
                return
            if not (run / "cancelled").exists():
                write_atomic(run / "cancelled", now().isoformat())
            if (run / "queued").exists():
                (run / "queued").unlink()
                self._finalize(run, JobState.CANCELLED, None, "cancelled before it started")
                return
            proc = read_proc(run)
            token = run_token(run)
            if proc is not None and alive(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pgid, signal.SIGTERM)
            else:
                signal_all(run_processes(proc, token), signal.SIGTERM)
        deadline = time.monotonic() + self.kill_grace_s
        while time.monotonic() < deadline:
            if not self._running(run):
                break
            time.sleep(0.02)
        else:
            signal_all(run_processes(read_proc(run), token), signal.SIGKILL)
        with self._locked():
            self._tick()

    def logs(self, ref: str, tail_bytes: int | None = None) -> str:
        path = self._run_dir(ref) / "stdout.log"
        try:
            return read_log(path, tail_bytes)
        except FileNotFoundError:
            return ""  # not started yet

    def checkpoint(self, ref: str) -> str | None:
        with self._locked():
            self._tick()
            run = self._run_dir(ref)
            ckpt = self._load(run)["checkpoint_dir"]
            status = self._status(ref)
            if status.state is JobState.MIGRATING:
                return str(ckpt)  # already checkpointed: idempotent
            proc = read_proc(run)
            if (
                status.state is not JobState.RUNNING
                or (run / "cancelled").exists()
                or proc is None
                or not alive(proc)
            ):
                raise ExecutorError(self.name, f"cannot checkpoint {ref}: it is {status.state}")
            if not (run / "checkpoint_requested").exists():
                write_atomic(run / "checkpoint_requested", now().isoformat())
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pgid, CHECKPOINT_SIGNAL)
            return str(ckpt)

    def recorded_exit(self, ref: str) -> int | None:
        try:
            return read_int(self._run_dir(ref) / "exit_code")
        except ExecutorError:
            return None

    def reported_usage(self, ref: str) -> RunUsage:
        try:
            run = self._run_dir(ref)
        except ExecutorError:
            return RunUsage()
        return read_usage_file(usage_file(run))

    def capacity(self) -> Capacity:
        with self._locked():
            used_cpus, used_cards = self._tick()
        return Capacity(self.cpus, self.cards, used_cpus, used_cards)

    # ------------------------------------------------------------------ submission

    def _submit(self, sub: Submission, run_id: str, resume_from: str | None) -> str:
        if not _SAFE_ID.fullmatch(sub.job_id):
            raise ValueError(f"job_id {sub.job_id!r}: use letters, digits, '_', '.', '-'")
        ref = f"{self.center_id}/{run_id}"
        with self._locked():
            final = self._dir / run_id
            if final.exists():
                return ref  # idempotent: the first submission of this run wins
            if sub.cpus > self.cpus or sub.cards > self.cards:
                raise ExecutorError(
                    self.name,
                    f"refused {sub.job_id}: needs {sub.cpus} cpus and {sub.cards} cards, "
                    f"the center has {self.cpus} cpus and {self.cards} cards",
                )
            account = self._account(sub)
            ckpt = final / "checkpoint"
            if sub.checkpoint_dir is not None:
                ckpt = Path(sub.checkpoint_dir).resolve()
                ckpt.mkdir(parents=True, exist_ok=True)
            tmp = self._dir / f".tmp-{run_id}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(mode=0o700)
            (tmp / "work").mkdir()
            (tmp / "checkpoint").mkdir()
            record = {
                "submission": dataclasses.asdict(sub),
                "run_id": run_id,
                "checkpoint_dir": str(ckpt),
                "resume_from": resume_from,
                "account": account.name if account else None,
            }
            write_atomic(tmp / "submission.json", json.dumps(record, indent=1))
            text = sub.command if sub.command is not None else sub.script
            assert text is not None  # Submission checks that exactly one is set
            command = tmp / "command.sh"
            command.write_text(text if text.endswith("\n") else text + "\n")
            command.chmod(0o700)
            # a script with a #! line runs under its interpreter, anything else under /bin/sh
            shebang = sub.script is not None and text.startswith("#!")
            program = ([] if shebang else ["/bin/sh"]) + [str(final / "command.sh")]
            launch = shlex.join(program)
            if account is not None:
                # the sandbox survives the run's signals (ignored), the job gets them back
                sandboxed = self._contain(sub, account, tmp, final, ckpt, resume_from)
                launch = f"(trap '' USR1 TERM; exec {shlex.join(sandboxed + program)})"
            watchdog = unwatch = ""
            if self.lease_s is not None:
                watchdog = WATCHDOG.format(
                    lease=shlex.quote(str(final / LEASE_FILE)),
                    limit=max(1, math.ceil(self.lease_s)),
                    fenced=shlex.quote(str(final / FENCED_FILE)),
                )
                unwatch = UNWATCH
            wrapper = WRAPPER.format(
                work=shlex.quote(str(final / "work")),
                watchdog=watchdog,
                unwatch=unwatch,
                launch=launch,
                exit_tmp=shlex.quote(str(final / "exit_code.tmp")),
                exit_code=shlex.quote(str(final / "exit_code")),
            )
            (tmp / "run.sh").write_text(wrapper)
            queued = {"seq": time.time_ns(), "token": uuid.uuid4().hex}
            write_atomic(tmp / "queued", json.dumps(queued))
            # index first, then publish: a crash in between leaves an index entry without a
            # directory (dropped at the next tick), never a run nobody looks at
            (self._active / run_id).touch()
            os.rename(tmp, final)
            self._tick(observe=False)
        return ref

    def _account(self, sub: Submission) -> Account | None:
        """The account the job runs as (``None``: the server's own, unsandboxed)."""
        if not isinstance(self.sandbox, Sandbox):
            return None
        if sub.network and not self.sandbox.allow_network:
            raise ExecutorError(
                self.name, f"refused {sub.job_id}: it asks for network and this center allows none"
            )
        try:
            return self.sandbox.account_for(sub.tenant_id)
        except SandboxUnavailable as exc:
            raise ExecutorError(self.name, f"refused {sub.job_id}: {exc}") from None

    def _contain(
        self,
        sub: Submission,
        account: Account,
        tmp: Path,
        final: Path,
        ckpt: Path,
        resume_from: str | None,
    ) -> list[str]:
        """Give the run's job its own directories (``tmp``, published as ``final``) and return
        the sandbox command for it. Caller holds the lock."""
        assert isinstance(self.sandbox, Sandbox)
        (tmp / USAGE_FILE_NAME).touch()
        give(tmp / USAGE_FILE_NAME, account, 0o600)
        give(tmp / "work", account, 0o700)
        give(tmp / "checkpoint", account, 0o700)
        give(tmp / "command.sh", account, 0o500)
        writable = [final / "work", final / "checkpoint", final / USAGE_FILE_NAME]
        if ckpt != final / "checkpoint":
            give_tree(ckpt, account)  # the job's own, from earlier runs of it too
            writable.append(ckpt)
        readable = [final / "command.sh"]
        if resume_from is not None and Path(resume_from) not in writable:
            give_tree(Path(resume_from), account)
            readable.append(Path(resume_from))
        write_atomic(tmp / LIMITS_FILE, self.sandbox.limits.record(sub.mem_gb))
        cgroups = self.cgroups
        return self.sandbox.command(
            account,
            work=final / "work",
            writable=writable,
            readable=readable,
            mem_gb=sub.mem_gb,
            network=sub.network,
            cgroup_procs=cgroups.procs(final.name) if cgroups is not None else (),
            cgroup_memory=cgroups is not None and cgroups.memory is not None,
            cgroup_processes=cgroups is not None and cgroups.pids is not None,
        )

    # ------------------------------------------------------------------ the tick

    def _tick(self, observe: bool = True) -> tuple[int, int]:
        """Observe every unfinished run, start queued ones that fit; return (cpus, cards) used.

        ``observe=False`` (a submission): runs are not looked at, only counted, each launched
        and not yet finalized one as holding its slots, so the new run starts at once if it
        fits beside them and waits otherwise for the next observing tick (a poll), which
        finalizes what has ended and starts it. Observing every run reads several files of
        each (and looked through the host's processes for each that ended): per submission,
        with hundreds of runs, that was most of a placer's hand-over (``bench_e2e.py``).

        Caller holds the lock.
        """
        used_cpus = used_cards = 0
        waiting: list[tuple[int, str, Path, int, int]] = []
        entries = sorted(self._active.iterdir())
        active = {e.name for e in entries}  # what is known of runs no longer active goes
        self._sizes = {k: v for k, v in self._sizes.items() if k in active}
        self._launched &= active
        for entry in entries:
            if not observe and entry.name in self._launched:
                # launched, and on the index: not finalized (a run's finalizing takes it off
                # the index under this lock, in any process), and never queued again
                cpus, cards = self._sizes[entry.name]
                used_cpus += cpus
                used_cards += cards
                continue
            run = self._dir / entry.name
            if not run.is_dir():
                entry.unlink(missing_ok=True)
                continue
            if observe:
                status = self._observe(run)
                if status.state.is_terminal or status.state is JobState.MIGRATING:
                    self._launched.discard(entry.name)
                    continue
            elif (run / "final.json").exists():
                continue  # finalized by a process that stopped before taking it off the index
            cpus, cards = self._size(run)
            if (run / "queued").exists():
                seq = int(json.loads((run / "queued").read_text())["seq"])
                waiting.append((seq, entry.name, run, cpus, cards))
            else:
                used_cpus += cpus
                used_cards += cards
                self._launched.add(entry.name)
        for _, name, run, cpus, cards in sorted(waiting):
            if used_cpus + cpus > self.cpus or used_cards + cards > self.cards:
                break  # strict FIFO: a big job at the head is not overtaken by small ones
            if self._launch(run):
                used_cpus += cpus
                used_cards += cards
                self._launched.add(name)
        return used_cpus, used_cards

    def _size(self, run: Path) -> tuple[int, int]:
        """The (cpus, cards) a run holds, read once (a run's submission never changes)."""
        size = self._sizes.get(run.name)
        if size is None:
            sub = self._load(run)["submission"]
            size = self._sizes[run.name] = (int(sub["cpus"]), int(sub["cards"]))
        return size

    def _launch(self, run: Path) -> bool:
        """Start a queued run. Caller holds the lock. False if it could not be started."""
        record = self._load(run)
        sub = record["submission"]
        os.rename(run / "queued", run / "launched")
        token = run_token(run)
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(sub["env"])
        env.update(
            job_env(
                job_id=sub["job_id"],
                cards=sub["cards"],
                cpus=sub["cpus"],
                checkpoint_dir=record["checkpoint_dir"],
                run_dir=run,
                resume_from=record["resume_from"],
            )
        )
        env[ENV_RUN_TOKEN] = token
        write_atomic(run / LEASE_FILE, "")  # a lease from now (used if the run has a watchdog)
        write_atomic(run / "started_at", now().isoformat())
        try:
            self._make_cgroup(run)
            proc = spawn_wrapper(run, env)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self._finalize(run, JobState.FAILED, None, f"could not start: {exc}")
            return False
        write_atomic(run / "pid", json.dumps(dataclasses.asdict(proc)))
        return True

    def _make_cgroup(self, run: Path) -> None:
        """Make the run's cgroup, with its limits, if its wrapper joins one. Raises
        ``OSError``."""
        record = parse_record(read_bytes(run / LIMITS_FILE).decode(errors="replace"))
        if self.cgroups is not None and record is not None:
            limits, memory = record
            self.cgroups.create(run.name, memory, limits.max_processes)

    # ------------------------------------------------------------------ observing a run

    def _observe(self, run: Path) -> ExecutorStatus:
        """The run's status now; finalizes runs that ended. Caller holds the lock."""
        ref = f"{self.center_id}/{run.name}"
        final = read_json(run / "final.json")
        if final is not None:
            return status_from(ref, final)
        started = read_time(run / "started_at")
        if (run / "queued").exists():
            return ExecutorStatus(ref, JobState.SCHEDULED, reason="queued: waiting for free slots")
        if not (run / "launched").exists():
            return self._finalize(run, JobState.FAILED, None, "run directory is incomplete")
        token = run_token(run)
        proc = read_proc(run)
        if proc is None:
            # the server died between starting the run and writing its pid
            proc = self._adopt(run, token)
            if proc is None and not (run / "exit_code").exists():
                if with_token(token, pgid=None):
                    return ExecutorStatus(ref, JobState.SCHEDULED, reason="starting")
                if not (run / "stdout.log").exists():  # else: it started and is gone
                    if age_s(run / "launched") <= self.launch_grace_s:
                        return ExecutorStatus(ref, JobState.SCHEDULED, reason="starting")
                    os.rename(run / "launched", run / "queued")  # it never started
                    return ExecutorStatus(ref, JobState.SCHEDULED, reason="queued again")
        if proc is not None and alive(proc):
            reason = "cancelling" if (run / "cancelled").exists() else ""
            return ExecutorStatus(ref, JobState.RUNNING, started_at=started, reason=reason)
        # the wrapper has ended; what is left of its process group goes too (after the grace
        # period if we are cancelling: a job may clean up on SIGTERM)
        members = run_processes(proc, token)
        cancelled_at = read_time(run / "cancelled")
        grace = (
            cancelled_at is not None and (now() - cancelled_at).total_seconds() < self.kill_grace_s
        )
        if members and grace:
            return ExecutorStatus(ref, JobState.RUNNING, started_at=started, reason="cancelling")
        signal_all(members, signal.SIGKILL)
        code = read_int(run / "exit_code")
        requested = (run / "checkpoint_requested").exists()
        if code is None and (run / FENCED_FILE).exists():
            why = "stopped by its lease: no poll saw it alive for longer than the lease"
            return self._finalize(run, JobState.LOST, None, why, cause=LEASE)
        if cancelled_at is not None and not _recorded_before(run / "exit_code", cancelled_at):
            return self._finalize(run, JobState.CANCELLED, code, "cancelled")
        # (a run that had ended by itself before the cancel came keeps its own end: an agent
        # fencing its runs must not report a finished run as stopped, to be run again)
        if code is None:
            return self._finalize(
                run, JobState.FAILED, None, "the job ended without an exit code (killed?)"
            )
        if code == 0:
            return self._finalize(run, JobState.SUCCEEDED, 0, "")
        if code == CHECKPOINT_EXIT_CODE and requested:
            ckpt = self._load(run)["checkpoint_dir"]
            return self._finalize(run, JobState.MIGRATING, code, f"checkpointed to {ckpt}")
        if requested:
            reason = (
                f"exit code {code} after a checkpoint request (a checkpointed job exits "
                f"{CHECKPOINT_EXIT_CODE}; does it handle SIGUSR1?)"
            )
            return self._finalize(run, JobState.FAILED, code, reason)
        hit = self._limit_hit(run, code)
        return self._finalize(run, JobState.FAILED, code, f"exit code {code}" + hit)

    def _limit_hit(self, run: Path, code: int) -> str:
        """``": <the limit the run ran into>"``, or ``""`` (none, or not sandboxed)."""
        record = parse_record(read_bytes(run / LIMITS_FILE).decode(errors="replace"))
        if record is None:
            return ""
        ended = self.cgroups.ended(run.name) if self.cgroups is not None else Ended()
        tail = self.logs(f"{self.center_id}/{run.name}", _LIMIT_LOG_TAIL)
        hit = limit_hit(
            code,
            tail,
            *record,
            oom_kills=ended.oom_kills,
            forks_refused=ended.forks_refused,
        )
        return f": {hit}" if hit else ""

    def _adopt(self, run: Path, token: str) -> Proc | None:
        """Find the wrapper of a run started by a server that crashed before writing ``pid``."""
        wrapper = str(run / "run.sh")
        for pid in with_token(token, pgid=None):
            cmdline = read_bytes(Path(f"/proc/{pid}/cmdline")).split(b"\0")
            stat = proc_stat(pid)
            if stat is not None and wrapper.encode() in cmdline:
                proc = Proc(pid, stat[1], stat[2])
                write_atomic(run / "pid", json.dumps(dataclasses.asdict(proc)))
                return proc
        return None

    def _running(self, run: Path) -> bool:
        proc = read_proc(run)
        if proc is not None and alive(proc):
            return True
        return bool(run_processes(proc, run_token(run)))

    def _finalize(
        self,
        run: Path,
        state: JobState,
        exit_code: int | None,
        reason: str,
        *,
        cause: str | None = None,
    ) -> ExecutorStatus:
        """Record a run's terminal status once and take it off the active index."""
        exit_file = run / "exit_code"
        ended = (
            datetime.fromtimestamp(exit_file.stat().st_mtime, UTC)
            if exit_file.exists() and state is not JobState.CANCELLED
            else now()
        )
        started = read_time(run / "started_at")
        final = {
            "state": str(state),
            "exit_code": exit_code,
            "started_at": started.isoformat() if started else None,
            "ended_at": ended.isoformat(),
            "reason": reason,
            "cause": cause,
        }
        write_atomic(run / "final.json", json.dumps(final))
        if self.cgroups is not None and not self.cgroups.remove(run.name):
            log.warning("%s: the cgroup of %s could not be removed yet", self.name, run.name)
        (self._active / run.name).unlink(missing_ok=True)
        return status_from(f"{self.center_id}/{run.name}", final)

    def _status(self, ref: str) -> ExecutorStatus:
        try:
            run = self._run_dir(ref)
        except ExecutorError as exc:
            return ExecutorStatus(ref, JobState.LOST, reason=str(exc), cause=CENTER)
        return self._observe(run)

    # ------------------------------------------------------------------ plumbing

    def _run_dir(self, ref: str) -> Path:
        center, _, run_id = ref.partition("/")
        if center != self.center_id or not _RUN_ID.fullmatch(run_id):
            raise ExecutorError(self.name, f"no run {ref!r} (references look like center/job)")
        run = self._dir / run_id
        if not (run / "submission.json").exists():
            raise ExecutorError(self.name, f"no run {ref!r}")
        return run

    @staticmethod
    def _load(run: Path) -> dict[str, Any]:
        record: dict[str, Any] = json.loads((run / "submission.json").read_text())
        return record

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with (self._dir / ".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _recorded_before(path: Path, at: datetime) -> bool:
    """Whether ``path`` (a run's exit code, moved into place when the run ended) was written
    at or before ``at``."""
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC) <= at
    except FileNotFoundError:
        return False
