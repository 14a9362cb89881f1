"""Slurm executor: a center backed by a real Slurm cluster, reached through ``slurmrestd``.

The platform talks to the cluster the way it would talk to a remote center: HTTP to
``slurmrestd`` (OpenAPI ``v0.0.38``, served by Slurm 22.05 – 23.02) with JWT authentication
(headers ``X-SLURM-USER-NAME`` and ``X-SLURM-USER-TOKEN``; a token is read from its file and
re-read when the file changes, so tokens can be rotated).

Accounts (who a job runs as):

* the platform's own account at the center (``user``, its JWT in ``token_file``) lists jobs
  and nodes; it never runs a tenant's job;
* each tenant's jobs run as the tenant's own Unix account at the center (``accounts``: tenant
  name → account): they are submitted with that account's JWT (``account_tokens/<account>``),
  and the run directory (and the job's checkpoint directory) belong to that account, mode
  ``0700``, so no other tenant's job can read or write them. Cancelling and checkpoint signals
  go out as the job's own account too. The platform creates each run directory and hands it
  over (``chown``), so it must be root on its side of ``output_dir``; it reads what the run
  leaves there (log, exit code, usage) never through a symbolic link;
* a tenant with no account at the center does not run there (:meth:`SlurmExecutor.account_for`
  says ``None``; placement leaves the center out for that tenant and a submission is refused),
  unless ``unsafe_shared_user``: then it runs as ``user`` itself, as every such tenant does,
  and they can read each other's files (what the platform did before accounts; dangerous).

Mapping:

* a run is a batch job named ``sw-<job id>`` (``sw-<job id>.<attempt>`` for a new attempt after
  failover, ``….resume-<hash>`` for a resumed checkpoint); submit looks the name up first, so a
  retried submit returns the existing job, never a second one (exactly once across crashes);
* accelerators are GRES ``gpu:<model>:<cards>`` (model ids with ``-`` → ``_``), CPUs
  ``cpus_per_task``, memory ``memory_per_node``; the partition comes from the configuration;
* each run has a directory, ``output_dir/<run>`` (see "Run directory" below); ``output_dir``
  must be readable here (the testbed's is local; a remote center would export it, e.g. over
  NFS);
* Slurm states → platform states: ``PENDING``/``REQUEUED`` → ``scheduled``; ``RUNNING``,
  ``CONFIGURING``, ``COMPLETING``, ``SUSPENDED`` → ``running``; ``COMPLETED`` → ``succeeded``;
  ``CANCELLED`` → ``cancelled``; ``FAILED`` with exit code 85 → ``migrating`` (checkpointed);
  ``FAILED``, ``TIMEOUT``, ``OUT_OF_MEMORY``, ``DEADLINE``, ``BOOT_FAIL`` → ``failed``;
  ``NODE_FAIL``, ``PREEMPTED`` and ``FAILED`` for the cluster's reasons (``JobLaunchFailure``,
  ``NodeDown``, prolog/epilog) → ``lost`` (the work did not finish through no fault of its own);
  the state reason is passed on;
* checkpoint: ``SIGUSR1`` to the job (``DELETE /job/{id}?signal=SIGUSR1``), which reaches the
  batch script and every step;
* the batch script is a small wrapper (:func:`_script`) that runs the job at most once to its
  end, even if Slurm loses state in a power cut and starts the job again.

Run directory (``output_dir/<run>``, made by the platform, then the account's, mode ``0700``;
``0777`` under ``unsafe_shared_user``):

* ``job`` (the job's command or script), ``lease``, ``exit_code`` and ``lease_stopped``: the
  wrapper's records (see :func:`_script`); the platform reads the exit code and whether the
  watchdog stopped the run, and touches the lease;
* ``output.log``: the job's stdout and stderr (Slurm opens it for the job: its own output);
* ``usage.jsonl``: the tokens it reports (``$SUANWANG_USAGE_FILE``);
* ``checkpoint/``: its checkpoint directory, unless the platform names another;
* ``work/`` (contained runs only): the job's cwd and ``$HOME``;
* ``limits`` (contained runs only): the limits it runs under (:meth:`Limits.record`).

A contained job sees of it only ``work/``, ``usage.jsonl`` and ``checkpoint/`` (writable) and
``job`` (read-only), so it cannot write an end of its own, hold its lease or rewrite its text.
``output_dir`` is empty in its view, also where one of the ``shared_dirs`` holds it (or
reaches it through a link), so no run's records are in view; a run whose shared or checkpoint
directory lies in ``output_dir`` outside its own part is refused. An uncontained job runs in
the run directory itself, as the account the wrapper runs as, and can write everything there,
the wrapper's records included: containment is what protects them.

Containment (``contain``, default: on when ``bwrap`` is installed on the platform's host, which
is the center's on the testbed; set it explicitly for a real center): the wrapper runs the
job's program in ``bwrap`` (Debian's ``bubblewrap``), started by the job's own unprivileged
account on the compute node (an unprivileged user namespace), with the view of
:mod:`suanwang.executors.contain`: no network (its own loopback only: not the platform's
database or API, not the node's other services), its own PID namespace (it sees only its own
processes), a read-only system, and of the center's files only its own part of its run
directory (above) and its checkpoint directory (writable) and the checkpoint it resumes from
(read-only). A job that asks for network is refused by a contained center. ``shared_dirs``:
directories every contained job may also write (a site's scratch file system; none by
default: they are a channel between tenants, the operator's choice). The sandbox ignores
``SIGUSR1`` and ``SIGTERM`` (the job gets them with their default action), so checkpoint and
cancel reach the job as before; the wrapper outside the sandbox keeps the lease and records
the exit code, where the job cannot write them. The sandbox starts under the local sandbox's
rlimits (:mod:`suanwang.executors.limits`: address space = the job's ``mem_gb``, CPU seconds,
processes of its account, file size; ``limits``), which the wrapper does not have; a run that
fails by one of them says which in its reason (:meth:`SlurmExecutor.poll`). A center's own
cgroups (Slurm's ``task/cgroup``) apply on top.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import pwd
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from suanwang.core.lifecycle import JobState
from suanwang.executors.base import (
    CENTER,
    CHECKPOINT_EXIT_CODE,
    ENV_CHECKPOINT_DIR,
    LEASE,
    PREEMPTED,
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
from suanwang.executors.contain import bwrap_args, restore_signals
from suanwang.executors.limits import Limits, limit_hit, parse_record

LEASE_FILE = "lease"
#: Written by a run's watchdog when it stops the run because its lease ran out (the age of the
#: lease, in seconds): the run was stopped for the platform's silence, not the job's doing.
LEASE_STOP_FILE = "lease_stopped"
#: A contained run's limits (:meth:`Limits.record`), written by the platform (a wrapper's record).
LIMITS_FILE = "limits"
#: How much of a failed run's log tells which limit it ran into.
_LIMIT_LOG_TAIL = 4096
#: A contained job's own directory in its run directory: its cwd and ``$HOME``.
WORK_DIR = "work"
#: Exit code of a run whose lease had expired before it could start (it did not run).
LEASE_EXIT_CODE = 75
_RUNNING = {"RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING"}
_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "RESV_DEL_HOLD"}
_FAILED = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "DEADLINE", "BOOT_FAIL", "SPECIAL_EXIT"}
_LOST = {"NODE_FAIL", "PREEMPTED", "REVOKED"}
#: Reasons of a FAILED job that are the cluster's doing, not the job's: it is lost, not failed.
_SYSTEM_REASONS = {"JobLaunchFailure", "NodeDown", "Prolog", "Epilog"}

#: The environment a job starts with, besides the SUANWANG_* variables (no --export=ALL).
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}


def gres_type(model: str) -> str:
    """Slurm GRES type name of an accelerator model."""
    return model.replace("-", "_")


def model_of(gres_type_name: str) -> str:
    return gres_type_name.replace("_", "-")


def run_name(sub: Submission, resume_from: str | None = None) -> str:
    name = f"sw-{sub.job_id}" + (f".{sub.attempt}" if sub.attempt else "")
    if resume_from is not None:
        name += ".resume-" + hashlib.sha256(resume_from.encode()).hexdigest()[:12]
    return name


def _split(ref: str) -> tuple[int | None, str]:
    """``"<slurm job id>:<run name>"`` → ``(id, name)``; ``(None, "")`` for anything else."""
    jid, sep, name = ref.partition(":")
    return (int(jid), name) if sep and jid.isdigit() and name else (None, "")


def _exit_code(raw: Any) -> int | None:
    """Slurm reports a wait status: exit code in the high byte, a signal in the low bits."""
    if not isinstance(raw, int):
        return None
    sig = raw & 0x7F
    return 128 + sig if sig else raw >> 8


def _time(raw: Any) -> datetime | None:
    return datetime.fromtimestamp(raw, UTC) if isinstance(raw, int) and raw > 0 else None


def status_of(ref: str, job: Mapping[str, Any]) -> ExecutorStatus:
    """A Slurm job record (v0.0.38) as the platform sees it."""
    state = str(job.get("job_state", "")).split()[0].upper()
    reason = str(job.get("state_reason") or "")
    reason = "" if reason == "None" else reason
    code = _exit_code(job.get("exit_code"))
    started = _time(job.get("start_time"))
    ended = _time(job.get("end_time"))
    if state in _WAITING:
        return ExecutorStatus(ref, JobState.SCHEDULED, reason=f"slurm {state} {reason}".strip())
    if state in _RUNNING:
        return ExecutorStatus(ref, JobState.RUNNING, started_at=started, reason=f"slurm {state}")
    label = f"slurm {state}" + (f" ({reason})" if reason else "")
    if state == "COMPLETED":
        return ExecutorStatus(ref, JobState.SUCCEEDED, code, started, ended, label)
    if state == "CANCELLED":
        return ExecutorStatus(ref, JobState.CANCELLED, code, started, ended, label)
    if state in _FAILED and code == LEASE_EXIT_CODE:  # its lease ran out before it could start
        return ExecutorStatus(ref, JobState.LOST, code, started, ended, label, LEASE)
    if state in _FAILED and reason in _SYSTEM_REASONS:
        return ExecutorStatus(ref, JobState.LOST, code, started, ended, label, CENTER)
    if state in _FAILED:
        target = JobState.MIGRATING if code == CHECKPOINT_EXIT_CODE else JobState.FAILED
        return ExecutorStatus(ref, target, code, started, ended, label)
    if state in _LOST:
        cause = PREEMPTED if state == "PREEMPTED" else CENTER
        return ExecutorStatus(ref, JobState.LOST, code, started, ended, label, cause)
    return ExecutorStatus(ref, JobState.SCHEDULED, reason=f"slurm {state} (unmapped)")


def _parse_gres(text: str) -> dict[str, int]:
    """``gpu:a100:8,gpu:h20:2(IDX:0-1)`` → ``{"a100": 8, "h20": 2}`` (typed gpu GRES only)."""
    out: dict[str, int] = {}
    for item in filter(None, (t.strip() for t in (text or "").split(","))):
        parts = item.split("(", 1)[0].split(":")
        if len(parts) == 3 and parts[0] == "gpu" and parts[2].isdigit():
            out[model_of(parts[1])] = out.get(model_of(parts[1]), 0) + int(parts[2])
    return out


class SlurmExecutor:
    """Runs one center's jobs on a Slurm cluster through slurmrestd. See the module docstring."""

    def __init__(
        self,
        center_id: str,
        url: str,
        token_file: str | Path,
        user: str,
        output_dir: str | Path,
        *,
        partition: str | None = None,
        api_version: str = "v0.0.38",
        timeout_s: float = 10.0,
        lease_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        accounts: Mapping[str, str] | None = None,
        account_tokens: str | Path | None = None,
        unsafe_shared_user: bool = False,
        contain: bool | None = None,
        shared_dirs: Sequence[str | Path] = (),
        limits: Limits = Limits(),  # noqa: B008 (frozen)
    ) -> None:
        self.name = f"slurm:{center_id}"
        self.center_id = center_id
        self.url = url.rstrip("/")
        self.token_file = Path(token_file)
        self.user = user
        self.accounts = dict(accounts or {})
        if self.accounts and account_tokens is None:
            raise ValueError(f"{self.name}: accounts need account_tokens (a JWT per account)")
        self.account_tokens = Path(account_tokens) if account_tokens is not None else None
        self.unsafe_shared_user = unsafe_shared_user
        self.contain = shutil.which("bwrap") is not None if contain is None else contain
        self.shared_dirs = [Path(d) for d in shared_dirs]
        self.limits = limits
        self.output_dir = Path(output_dir)
        self.partition = partition
        self.lease_s = lease_s  # and stop_grace_s with it
        self.api = f"/slurm/{api_version}"
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)
        self._tokens: dict[Path, tuple[float, str]] = {}

    @property
    def lease_s(self) -> float:
        """How long a run goes on without a poll that sees it alive before it stops itself
        (the wrapper's watchdog: :func:`_script`), for runs submitted from now on."""
        return self._lease_s

    @lease_s.setter
    def lease_s(self, value: float) -> None:
        self._lease_s = value
        # how long after its last renewal a run may still be going: the watchdog checks
        # once a second, with whole-second file times; kept with the lease, which an agent
        # sets from the control plane's answer (a grace left at an older lease's would give
        # a center's runs up a minute late, or too early)
        self.stop_grace_s = float(max(1, math.ceil(value)) + 3)

    # ------------------------------------------------------------------ accounts

    def account_for(self, tenant: str) -> str | None:
        """The account ``tenant``'s jobs run as here; ``None``: they do not run here."""
        account = self.accounts.get(tenant)
        if account is None and self.unsafe_shared_user:
            return self.user
        return account

    def _private(self, account: str) -> bool:
        """Whether runs of ``account`` get directories of their own (not the shared user)."""
        return account != self.user

    def _owner(self, job: Mapping[str, Any]) -> str:
        """The account to act as on a Slurm job: its own when it is one of ours."""
        owner = str(job.get("user_name") or "")
        return owner if owner in self.accounts.values() else self.user

    # ------------------------------------------------------------------ HTTP

    def _token_value(self, account: str) -> str:
        if account == self.user or self.account_tokens is None:
            path = self.token_file
        else:
            path = self.account_tokens / account
        try:
            mtime = path.stat().st_mtime
            cached = self._tokens.get(path)
            if cached is None or cached[0] != mtime:
                cached = self._tokens[path] = (mtime, path.read_text().strip())
        except OSError as exc:
            raise ExecutorError(self.name, f"cannot read token {path}: {exc}") from None
        return cached[1]

    def _call(
        self, method: str, path: str, *, account: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        """A request to slurmrestd as ``account`` (default: the platform's own, ``user``)."""
        who = account or self.user
        headers = {"X-SLURM-USER-NAME": who, "X-SLURM-USER-TOKEN": self._token_value(who)}
        try:
            r = self._client.request(method, self.api + path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise ExecutorError(self.name, f"slurmrestd at {self.url} unreachable: {exc}") from None
        try:
            body: dict[str, Any] = r.json()
        except ValueError:
            text = r.text.strip()[:200]
            raise ExecutorError(
                self.name, f"slurmrestd {method} {path}: HTTP {r.status_code} {text}"
            ) from None
        return body

    @staticmethod
    def _errors(body: Mapping[str, Any]) -> list[str]:
        return [
            str(e.get("description") or e.get("error") or e)
            for e in body.get("errors") or []
            if e.get("error_number", e.get("error_code", 1)) not in (0, None)
        ]

    def _jobs(self) -> dict[int, dict[str, Any]]:
        body = self._call("GET", "/jobs")
        errors = self._errors(body)
        if errors:
            raise ExecutorError(self.name, "listing jobs: " + "; ".join(errors))
        return {int(j["job_id"]): j for j in body.get("jobs") or []}

    # ------------------------------------------------------------------ protocol

    def submit(self, sub: Submission) -> str:
        return self._submit(sub, None)

    def resume(self, sub: Submission, checkpoint_dir: str) -> str:
        if not Path(checkpoint_dir).is_dir():
            raise ExecutorError(self.name, f"cannot resume {sub.job_id}: no {checkpoint_dir}")
        return self._submit(sub, checkpoint_dir)

    def _submit(self, sub: Submission, resume_from: str | None) -> str:
        account = self.account_for(sub.tenant)
        if account is None:
            raise ExecutorError(
                self.name,
                f"tenant {sub.tenant!r} has no account at center {self.center_id} "
                "(platform file: executor.accounts)",
            )
        if sub.network and self.contain:
            raise ExecutorError(
                self.name,
                f"refused {sub.job_id}: it asks for network and center {self.center_id} "
                "contains its jobs without one",
            )
        name = run_name(sub, resume_from)
        existing = [jid for jid, j in self._jobs().items() if j.get("name") == name]
        if existing:
            return f"{min(existing)}:{name}"  # submitted before (a retry after a crash)
        run_dir = self.output_dir / name
        ckpt = Path(sub.checkpoint_dir) if sub.checkpoint_dir else run_dir / "checkpoint"
        if run_dir.is_symlink():
            raise ExecutorError(self.name, f"{run_dir} is a symbolic link: not using it")
        if self.contain:
            self._records_apart(run_dir, ckpt)
        private = self._private(account)
        dirs = (run_dir, ckpt, run_dir / WORK_DIR) if self.contain else (run_dir, ckpt)
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
            if not private:
                d.chmod(0o777)  # the shared user may be another (unprivileged) user than ours
        _write_new(run_dir / LEASE_FILE, "")
        if self.contain:  # bound into the sandbox, so it must exist: the job's to write
            _write_new(usage_file(run_dir), "", 0o644 if private else 0o666)
            _write_new(run_dir / LIMITS_FILE, self.limits.record(sub.mem_gb))
        env = {
            **BASE_ENV,
            **sub.env,
            **job_env(
                job_id=sub.job_id,
                cards=sub.cards,
                cpus=sub.cpus,
                checkpoint_dir=str(ckpt),
                run_dir=run_dir,
                resume_from=resume_from,
            ),
            "SUANWANG_CENTER": self.center_id,
        }
        job: dict[str, Any] = {
            "name": name,
            "current_working_directory": str(run_dir),
            "standard_output": str(run_dir / "output.log"),
            "standard_error": str(run_dir / "output.log"),
            "environment": env,
            "tasks": 1,
            "cpus_per_task": max(1, sub.cpus),
            "requeue": False,
        }
        if sub.mem_gb > 0:
            job["memory_per_node"] = max(1, math.ceil(sub.mem_gb * 1024))
        if sub.cards > 0 and sub.accelerator not in ("any", "cpu"):
            job["gres"] = f"gpu:{gres_type(sub.accelerator)}:{sub.cards}"
        if self.partition:
            job["partition"] = self.partition
        sandbox = (
            self.limits.prlimit(sub.mem_gb)
            + _sandbox(account, run_dir, ckpt, resume_from, self.shared_dirs)
            if self.contain
            else None
        )
        script = _script(sub, run_dir, self.lease_s, sandbox)
        if private:
            self._hand_over(account, dirs)
        body = self._call(
            "POST", "/job/submit", account=account, json={"job": job, "script": script}
        )
        errors = self._errors(body)
        if errors or not body.get("job_id"):
            raise ExecutorError(
                self.name, f"Slurm refused {name}: {'; '.join(errors) or 'no job id returned'}"
            )
        return f"{body['job_id']}:{name}"

    def _records_apart(self, run_dir: Path, ckpt: Path) -> None:
        """Refuse a contained run that would write into ``output_dir`` outside its own part of
        its run directory (the sandbox hides ``output_dir`` and binds that part back; a shared
        or checkpoint directory there would be bound back too, with runs' records in it)."""
        out, run = self.output_dir.resolve(), run_dir.resolve()
        for d in (*self.shared_dirs, ckpt):
            real = d.resolve()
            if real.is_relative_to(out) and not (real.is_relative_to(run) and real != run):
                raise ExecutorError(
                    self.name,
                    f"{d} (a shared or checkpoint directory, writable by contained jobs) is in "
                    f"output_dir {self.output_dir} but not in the run's own {run_dir}: the job "
                    "could forge runs' records",
                )

    def _hand_over(self, account: str, dirs: Sequence[Path]) -> None:
        """Give ``dirs`` (the run directory first, the checkpoint directory: with what is in
        them, which may come from a run of another account, at another center) to
        ``account``, mode ``0700``."""
        try:
            entry = pwd.getpwnam(account)
        except KeyError:
            raise ExecutorError(
                self.name,
                f"account {account!r} is unknown on this host: the platform must resolve the "
                "center's accounts with the center's uids (e.g. the same LDAP)",
            ) from None
        try:
            for d in dirs:
                _give(d, entry.pw_uid, entry.pw_gid)
                os.chmod(d, 0o700, follow_symlinks=False)
        except OSError as exc:
            raise ExecutorError(
                self.name, f"cannot hand {dirs[0]} over to {account} (needs root): {exc}"
            ) from None

    def poll(self, refs: Sequence[str]) -> dict[str, ExecutorStatus]:
        """Statuses from Slurm; every run seen alive gets its lease renewed, a contained run
        that failed by one of its limits says which in its reason."""
        if not refs:
            return {}
        jobs = self._jobs()
        out: dict[str, ExecutorStatus] = {}
        for ref in refs:
            jid, name = _split(ref)
            job = jobs.get(jid) if jid is not None else None
            if job is None or job.get("name") != name:
                out[ref] = ExecutorStatus(
                    ref, JobState.LOST, reason=f"Slurm has no job {ref}", cause=CENTER
                )
                continue
            status = status_of(ref, job)
            if status.state in (JobState.RUNNING, JobState.SCHEDULED):
                with contextlib.suppress(OSError):  # the run owns the file: never follow a link
                    os.utime(self.output_dir / name / LEASE_FILE, follow_symlinks=False)
            elif status.state in (JobState.FAILED, JobState.LOST) and self._lease_stopped(name):
                status = replace(
                    status,
                    state=JobState.LOST,
                    reason=f"{status.reason}: stopped by its lease (no word from the platform)",
                    cause=LEASE,
                )
            elif status.state is JobState.FAILED and status.exit_code:
                hit = self._limit_hit(name, status.exit_code)
                status = replace(status, reason=f"{status.reason}: {hit}" if hit else status.reason)
            out[ref] = status
        return out

    def _lease_stopped(self, name: str) -> bool:
        """Whether the run's watchdog stopped it because its lease ran out, and it recorded no
        end (a run that ended on its own and was then killed on its way out ended)."""
        run_dir = self.output_dir / name
        try:
            return (run_dir / LEASE_STOP_FILE).is_file() and not (run_dir / "exit_code").exists()
        except OSError:
            return False

    def _limit_hit(self, name: str, code: int) -> str:
        """Which of its limits a contained run that failed with ``code`` ran into (``""``:
        none it shows, or not contained), from its limits record and the end of its log."""
        run_dir = self.output_dir / name
        try:
            record = parse_record(read_log(run_dir / LIMITS_FILE, _LIMIT_LOG_TAIL))
            tail = read_log(run_dir / "output.log", _LIMIT_LOG_TAIL)
        except OSError:
            return ""
        return limit_hit(code, tail, *record) if record is not None else ""

    def recorded_exit(self, ref: str) -> int | None:
        """The exit code the run's wrapper wrote when the job ended (``None``: not ended).

        Read from the run directory, not from Slurm: it answers while the cluster does not.
        """
        _, name = _split(ref)
        if not name:
            return None
        try:
            return int(read_log(self.output_dir / name / "exit_code", 64).strip())
        except (OSError, ValueError):
            return None

    def reported_usage(self, ref: str) -> RunUsage:
        """The tokens the run wrote to its usage file, read from the run directory (not Slurm)."""
        _, name = _split(ref)
        if not name:
            return RunUsage()
        return read_usage_file(usage_file(self.output_dir / name))

    def cancel(self, ref: str) -> None:
        jid, _ = _split(ref)
        if jid is None:
            return
        found = self._call("GET", f"/job/{jid}")
        if _gone(self._errors(found)):
            return
        jobs = found.get("jobs") or [{}]
        body = self._call("DELETE", f"/job/{jid}", account=self._owner(jobs[0]))
        errors = self._errors(body)
        if errors and not _gone(errors):
            raise ExecutorError(self.name, f"cancelling job {ref}: {'; '.join(errors)}")

    def logs(self, ref: str, tail_bytes: int | None = None) -> str:
        _, name = _split(ref)
        if not name:
            return ""
        path = self.output_dir / name / "output.log"
        try:
            return read_log(path, tail_bytes)
        except OSError:
            return ""

    def checkpoint(self, ref: str) -> str | None:
        jid, _ = _split(ref)
        job = self._jobs().get(jid) if jid is not None else None
        if job is None:
            raise ExecutorError(self.name, f"cannot checkpoint {ref}: Slurm has no such job")
        status = status_of(ref, job)
        env = job.get("environment") or {}
        run_dir = Path(str(job.get("current_working_directory") or ""))
        ckpt = str(env.get(ENV_CHECKPOINT_DIR) or run_dir / "checkpoint")
        if status.state is JobState.MIGRATING:
            return ckpt
        if status.state is not JobState.RUNNING:
            raise ExecutorError(self.name, f"cannot checkpoint {ref}: it is {status.state}")
        body = self._call(
            "DELETE", f"/job/{jid}", account=self._owner(job), params={"signal": "SIGUSR1"}
        )
        errors = self._errors(body)
        if errors:
            raise ExecutorError(self.name, f"signalling job {ref}: {'; '.join(errors)}")
        return ckpt

    def capacity(self) -> Capacity:
        body = self._call("GET", "/nodes")
        errors = self._errors(body)
        if errors:
            raise ExecutorError(self.name, "listing nodes: " + "; ".join(errors))
        cpus = used_cpus = cards = used_cards = 0
        by_model: dict[str, int] = {}
        for node in body.get("nodes") or []:
            if self.partition and self.partition not in (node.get("partitions") or []):
                continue
            state = str(node.get("state", "")).lower()
            if state in ("down", "drain", "drained", "fail", "future", "unknown"):
                continue
            cpus += int(node.get("cpus") or 0)
            used_cpus += int(node.get("alloc_cpus") or 0)
            total = _parse_gres(str(node.get("gres") or ""))
            used = _parse_gres(str(node.get("gres_used") or ""))
            for model, n in total.items():
                by_model[model] = by_model.get(model, 0) + n
            cards += sum(total.values())
            used_cards += sum(used.values())
        return Capacity(cpus, cards, used_cpus, used_cards, cards_by_model=by_model)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SlurmExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _gone(errors: Sequence[str]) -> bool:
    """Whether Slurm's errors say the job is finished or unknown (nothing to stop)."""
    return any("already completed" in e.lower() or "invalid job id" in e.lower() for e in errors)


def _write_new(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``path`` afresh: whatever was there (a run owns its directory, and might have left
    a symbolic link to another file) is removed, never followed."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)  # not narrowed by the umask


def _give(path: Path, uid: int, gid: int) -> None:
    """``chown`` the directory ``path`` and everything under it, never following a link."""
    os.chown(path, uid, gid, follow_symlinks=False)
    for _, dirs, files, dir_fd in os.fwalk(path, follow_symlinks=False):
        for entry in dirs + files:
            os.chown(entry, uid, gid, dir_fd=dir_fd, follow_symlinks=False)


def _sandbox(
    account: str, run_dir: Path, ckpt: Path, resume_from: str | None, shared: Sequence[Path] = ()
) -> list[str]:
    """``bwrap … -- env …`` for a contained run (see the module docstring): of the run directory
    only ``work/``, the usage file and the checkpoint directory writable and the ``job`` file
    readable (the wrapper's records next to them stay out of the job's view), the checkpoint
    it resumes from readable, and the ``shared`` directories. The output directory is hidden
    (empty) wherever the view has it, also inside a shared directory or the checkpoint
    directory that holds it: no run's records are in view; the run's own part is bound on
    top."""
    work = run_dir / WORK_DIR
    writable = [*shared, work, usage_file(run_dir)]
    writable += [] if ckpt.is_relative_to(work) else [ckpt]
    hidden = _seen_at(run_dir.parent, [*shared, ckpt])
    readable = [run_dir / "job"] + ([Path(resume_from)] if resume_from is not None else [])
    readable = [  # bound unless it is in view anyway (in a writable directory, not hidden)
        p
        for p in readable
        if any(p.is_relative_to(h) for h in hidden)
        or not any(p.is_relative_to(w) for w in writable)
    ]
    view = bwrap_args(
        work=work, writable=writable, readable=readable, user=account, network=False,
        here=False, hidden=hidden,
    )  # fmt: skip
    return [*view, *restore_signals()]


def _seen_at(target: Path, binds: Sequence[Path]) -> list[Path]:
    """Where ``target`` is in a view with ``binds`` bound at their own paths: its own path, and
    in each bind that holds it (links resolved, as binding them does)."""
    real = target.resolve()
    seen = [target] + [
        b / real.relative_to(b.resolve()) for b in binds if real.is_relative_to(b.resolve())
    ]
    return list(dict.fromkeys(seen))


def _script(
    sub: Submission, run_dir: Path, lease_s: float, sandbox: Sequence[str] | None = None
) -> str:
    """The batch script: a wrapper that runs the job once, under a lease, and records the end.

    * The user's command or script is written to ``run_dir/job``; the wrapper runs it and
      writes its exit code to ``run_dir/exit_code``. If that file exists when the wrapper
      starts, the job already ran to its end once and the wrapper exits with the recorded code
      instead of running it again: after a power cut ``slurmctld`` may recover a job from state
      saved a moment before it finished, and would otherwise start it a second time.
    * Lease: every poll that sees the run alive touches ``run_dir/lease``. A watchdog kills the
      run (its whole process group, without recording an exit) once the lease is older than
      ``lease_s``: a run whose center the platform cannot reach stops itself before the
      platform, after its longer grace period, starts the job somewhere else (self-fencing).
      It first writes the lease's age to ``run_dir/lease_stopped``, so a platform that polls
      again (the control plane back before the center's grace ran out) reads the run as lost
      by its lease (cause ``lease``: not the job's doing), not as what Slurm reports of the
      killed script (a failed launch, which counts against the job).
      A run whose lease has already expired when Slurm starts it (a queued job the platform
      gave up on, recovered by a restarted controller) does not start at all: exit
      :data:`LEASE_EXIT_CODE`, reported ``lost``.
    * The wrapper catches SIGUSR1, so the signal reaches the job, which handles it, and the
      wrapper waits for it.
    * ``sandbox``: the job's program runs inside it (``bwrap``, started with ``SIGUSR1`` and
      ``SIGTERM`` ignored; the job gets them back), the lease and the exit code stay outside
      (not in its view: :func:`_sandbox`); without one the job can write them (it runs as the
      wrapper's account).
    """
    job = run_dir / "job"
    text = sub.script if sub.script is not None else (sub.command or "") + "\n"
    _write_new(job, text, 0o755)
    if sandbox is not None:
        inner = (
            str(job) if text.startswith("#!") else f"trap 'true' USR1; . {shlex.quote(str(job))}"
        )
        argv = [*sandbox, *([inner] if text.startswith("#!") else ["/bin/sh", "-c", inner])]
        run = (
            "if ! command -v bwrap >/dev/null || ! command -v prlimit >/dev/null; then echo "
            '"suanwang: this center contains jobs (contain: true) but bwrap or prlimit is not '
            'installed on $(hostname)" >&2; false; else '
            f"( trap '' USR1 TERM; exec {shlex.join(argv)} ); fi"
        )
    elif text.startswith("#!"):
        run = shlex.quote(str(job))
    else:  # shell text runs in a subshell that also lets SIGUSR1 through to its commands
        run = f"( trap 'true' USR1; . {shlex.quote(str(job))} )"
    done = shlex.quote(str(run_dir / "exit_code"))
    lease = shlex.quote(str(run_dir / LEASE_FILE))
    stopped = shlex.quote(str(run_dir / LEASE_STOP_FILE))
    limit = max(1, math.ceil(lease_s))
    return (
        "#!/bin/sh\n"
        "# suanwang run wrapper (see suanwang.executors.slurm._script)\n"
        f'if [ -f {done} ]; then echo "suanwang: this run already ended; not run again" >&2; '
        f'exit "$(cat {done})"; fi\n'
        f"age=$(( $(date +%s) - $(stat -c %Y {lease} 2>/dev/null || echo 0) ))\n"
        f'if [ "$age" -gt {limit} ]; then echo "suanwang: no word from the platform for $age s '
        f'(lease {limit} s): not starting this run" >&2; exit {LEASE_EXIT_CODE}; fi\n'
        "trap 'true' USR1\n"
        "me=$$\n"
        "( trap '' USR1; while sleep 1; do\n"
        # a stat or date that could not start (the account at its process limit: the job's
        # own processes hold it; sh then reads nothing) says nothing of the lease: look
        # again in a second; only a lease file that is gone counts as expired
        f"    m=$(stat -c %Y {lease} 2>/dev/null); now=$(date +%s)\n"
        f'    [ -n "$m" ] || {{ [ -e {lease} ] && continue; m=0; }}; [ -n "$now" ] || continue\n'
        "    age=$(( now - m ))\n"
        f'    if [ "$age" -gt {limit} ]; then\n'
        f'      echo "suanwang: no word from the platform for $age s (lease {limit} s): '
        'stopping this run" >&2\n'
        f'      echo "$age" > {stopped}\n'
        '      kill -KILL -"$me" 2>/dev/null || kill -KILL "$me"; exit 0\n'
        "    fi\n"
        "  done ) &\n"
        "watchdog=$!\n"
        f"{run}\n"
        "rc=$?\n"
        'kill "$watchdog" 2>/dev/null\n'
        f'echo "$rc" > {done}.tmp && mv {done}.tmp {done}\n'
        'exit "$rc"\n'
    )
