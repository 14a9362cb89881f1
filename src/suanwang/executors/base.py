"""The executor protocol: how the control plane runs a job at a center.

A placement decision names a center; that center's executor runs the job. Every backend (local
processes now; Slurm via slurmrestd, maybe Kubernetes later) implements :class:`Executor`.

Contract, shared by all backends:

* ``submit`` is idempotent per ``job_id``: a second submit of the same job returns the same
  reference and never starts a second copy. The dispatcher relies on this to stay exactly-once
  across its own crashes (it may submit, crash before recording the reference, and submit again).
* ``poll`` never raises for a reference it does not know; it reports :attr:`JobState.LOST`.
* ``cancel`` is idempotent: cancelling a finished or already-cancelled run does nothing.
* States are :class:`~suanwang.core.lifecycle.JobState`: waiting inside the executor (its own
  queue) is ``scheduled``; a run that checkpointed on request is ``migrating``.

Checkpoint convention (what a checkpointable job does):

* the executor sends ``SIGUSR1`` (:data:`CHECKPOINT_SIGNAL`) to the job;
* the job writes its state into ``$SUANWANG_CHECKPOINT_DIR`` and exits with code
  :data:`CHECKPOINT_EXIT_CODE` (85);
* a resumed run gets ``SUANWANG_RESUME_FROM=<that dir>`` and reads its state from there.

Usage convention (what a job that serves tokens does, e.g. an LLM server or batch inference):

* the job appends JSON lines to ``$SUANWANG_USAGE_FILE`` (:data:`ENV_USAGE_FILE`), each an
  increment: ``{"tokens": 512}`` (a JSON integer, ``0 <= tokens < 10**12``), e.g.
  ``echo '{"tokens": 512}' >> "$SUANWANG_USAGE_FILE"``; the run's usage is the sum of its lines;
* write each line whole, in one write (``echo``, or one ``write`` of the line and its newline,
  file opened for appending), so lines from several processes of the job never interleave;
* the file is per run (a resumed or re-placed run gets a new one, so each run reports only what
  it served itself) and lives next to the run's recorded exit, on storage the platform reads;
  the platform reads it when the run ends and records the total with that end;
* :meth:`Executor.reported_usage` reads it with :func:`read_usage_file`, which parses it with
  :func:`parse_usage` (the rules for bad lines are there) and never reads more than
  :data:`USAGE_FILE_MAX_BYTES`.

Environment every job gets: ``SUANWANG_JOB_ID``, ``SUANWANG_CHECKPOINT_DIR``, ``SUANWANG_CARDS``
(number of accelerator cards held), ``SUANWANG_CPUS``, ``SUANWANG_USAGE_FILE`` and, on resume,
``SUANWANG_RESUME_FROM``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from suanwang.billing.money import MAX_TOKENS
from suanwang.core.lifecycle import JobState

#: Exit code of a job that wrote a checkpoint and stopped so it can be resumed elsewhere.
CHECKPOINT_EXIT_CODE = 85
#: Signal asking a running job to checkpoint.
CHECKPOINT_SIGNAL = signal.SIGUSR1

ENV_JOB_ID = "SUANWANG_JOB_ID"
ENV_CHECKPOINT_DIR = "SUANWANG_CHECKPOINT_DIR"
ENV_RESUME_FROM = "SUANWANG_RESUME_FROM"
ENV_CARDS = "SUANWANG_CARDS"
ENV_CPUS = "SUANWANG_CPUS"
ENV_USAGE_FILE = "SUANWANG_USAGE_FILE"

#: Name of the usage file in a run's directory (``$SUANWANG_USAGE_FILE``).
USAGE_FILE_NAME = "usage.jsonl"
#: At most this many bytes of a usage file are read (1 MiB); the rest is reported, not read.
USAGE_FILE_MAX_BYTES = 1 << 20
#: A line's ``tokens`` and a run's total must stay below this: billing's limit (a trillion, what
#: its quantity columns hold exactly).
USAGE_TOKENS_LIMIT = MAX_TOKENS
#: At most this many problems are listed for a run (the rest are counted in one more line).
USAGE_MAX_PROBLEMS = 20


def usage_file(run_dir: Path) -> Path:
    """Where a run writes its usage (``$SUANWANG_USAGE_FILE``): in the run's directory."""
    return run_dir / USAGE_FILE_NAME


def job_env(
    *,
    job_id: str,
    cards: int,
    cpus: int,
    checkpoint_dir: str,
    run_dir: Path,
    resume_from: str | None = None,
) -> dict[str, str]:
    """The ``SUANWANG_*`` variables every job gets (see the module docstring), its usage file
    in ``run_dir``; ``SUANWANG_RESUME_FROM`` only for a resumed run. An executor adds them
    after the submission's own ``env``, so they win."""
    env = {
        ENV_JOB_ID: job_id,
        ENV_CHECKPOINT_DIR: checkpoint_dir,
        ENV_CARDS: str(cards),
        ENV_CPUS: str(cpus),
        ENV_USAGE_FILE: str(usage_file(run_dir)),
    }
    if resume_from is not None:
        env[ENV_RESUME_FROM] = resume_from
    return env


class ExecutorError(RuntimeError):
    """An executor is unreachable or refused a request. The message names the executor."""

    def __init__(self, executor: str, message: str) -> None:
        super().__init__(f"executor {executor}: {message}")
        self.executor = executor


@dataclass(frozen=True, slots=True)
class Submission:
    """What an executor needs to run one job.

    Exactly one of ``command`` (a shell command line, run by ``/bin/sh``) and ``script`` (the text
    of a script; with a ``#!`` line it runs under that interpreter, else under ``/bin/sh``) is set.
    ``cards`` is the number of accelerator cards of model ``accelerator``; ``mem_gb`` is the
    memory the job expects (advisory for backends that cannot enforce it). ``env`` is added to the
    job's environment; the ``SUANWANG_*`` variables above are set by the executor and win.
    ``checkpoint_dir`` overrides where the job writes checkpoints (``None``: the backend gives
    every run a directory of its own). ``attempt`` counts dispatches of the job after failover:
    an executor treats ``(job_id, attempt)`` as the run's identity, so a job lost at a center
    and sent back there later starts afresh instead of finding its dead first run. ``tenant``
    is the name of the tenant the job belongs to: an executor that runs each tenant's jobs
    under an account of its own (Slurm: ``accounts``) chooses the account by it; ``tenant_id``
    is its id (the local sandbox names its per-tenant account after it); ``network``: the job
    asks for network access (a sandbox gives none otherwise).
    """

    job_id: str
    name: str
    command: str | None
    script: str | None
    cpus: int = 1
    cards: int = 0
    accelerator: str = "any"
    mem_gb: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    checkpoint_dir: str | None = None
    attempt: int = 0
    tenant: str = ""
    tenant_id: str = ""
    network: bool = False

    def __post_init__(self) -> None:
        if (self.command is None) == (self.script is None):
            raise ValueError(
                f"submission {self.job_id!r}: set exactly one of command and script "
                f"(got command={self.command is not None}, script={self.script is not None})"
            )
        if self.cpus < 0 or self.cards < 0 or self.mem_gb < 0:
            raise ValueError(
                f"submission {self.job_id!r}: cpus, cards and mem_gb must be >= 0 "
                f"(got cpus={self.cpus}, cards={self.cards}, mem_gb={self.mem_gb})"
            )


#: Causes of a ``lost`` run (:attr:`ExecutorStatus.cause`), set by the executor that knows it.
#: The run stopped itself because no word came from the platform for longer than its lease (a
#: local run's watchdog, a Slurm run's wrapper, an agent fencing its runs): not the job's doing.
LEASE = "lease"
#: The cluster preempted the run (Slurm's ``PREEMPTED``): not the job's doing.
PREEMPTED = "preempted"
#: The center lost the run for any other reason (a node failed, the launch failed, the run is
#: gone): counted against the job (``jobs.lost_runs``).
CENTER = "center"
CAUSES = frozenset({LEASE, PREEMPTED, CENTER})


@dataclass(frozen=True, slots=True)
class ExecutorStatus:
    """One run as its executor sees it. Times are UTC-aware; ``reason`` explains the state
    to people (free text: never parsed); ``cause`` says why a ``lost`` run was lost, for the
    platform to decide by (:data:`LEASE`, :data:`PREEMPTED`, :data:`CENTER`), or is None
    when the executor did not say (a status from an older agent or an older run record)."""

    ref: str
    state: JobState
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = ""
    cause: str | None = None

    def __post_init__(self) -> None:
        if self.cause is not None and self.cause not in CAUSES:
            raise ValueError(
                f"status of {self.ref!r}: cause must be one of {sorted(CAUSES)} or None "
                f"(got {self.cause!r})"
            )


@dataclass(frozen=True, slots=True)
class Capacity:
    """Slots of one executor (its center) and how many are held by running jobs.

    ``cards_by_model`` gives the cards per accelerator model where the backend knows them
    (a Slurm cluster's GRES); empty when cards are not tied to models (local processes).
    """

    slots_cpus: int
    slots_cards: int
    used_cpus: int
    used_cards: int
    cards_by_model: Mapping[str, int] = field(default_factory=dict)

    @property
    def free_cpus(self) -> int:
        return self.slots_cpus - self.used_cpus

    @property
    def free_cards(self) -> int:
        return self.slots_cards - self.used_cards


@dataclass(frozen=True, slots=True)
class RunUsage:
    """What a run reported it served: ``tokens`` summed over its good usage lines, and one
    message per problem found in its usage file (line number and what is wrong)."""

    tokens: int = 0
    problems: tuple[str, ...] = ()


def parse_usage(text: str) -> RunUsage:
    """Sum the ``tokens`` of a usage file's lines (see the module docstring); pure, never raises.

    Rules, line by line (numbered from 1):

    * blank lines are skipped;
    * a good line is a JSON object whose ``"tokens"`` is a JSON integer ``>= 0`` and below
      :data:`USAGE_TOKENS_LIMIT` (``512.0``, ``"512"``, ``true`` and ``null`` are not);
    * a line that is not JSON, not an object, or has no good ``"tokens"`` is a problem and
      counts nothing;
    * keys other than ``"tokens"`` are a problem, but the line's good ``tokens`` still count
      (the job did report them);
    * a line that would take the total to :data:`USAGE_TOKENS_LIMIT` or beyond is a problem
      and counts nothing;
    * the last line, if the text does not end with a newline, may have been cut off while being
      written (the job was killed): if it is not JSON it is ignored without a problem;
      otherwise it is read like any other line.

    At most :data:`USAGE_MAX_PROBLEMS` problems are listed; one more says how many were left out.
    """
    lines = text.split("\n")
    last = lines.pop()  # "" when the text ends with a newline (or is empty)
    if last.strip() and isinstance(_load(last), _Loaded):
        lines.append(last)  # a complete last line without its newline
    total = 0
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        tokens, problem = _usage_line(line)
        if tokens is not None and total + tokens >= USAGE_TOKENS_LIMIT:
            problem = f"the run's total would reach {_LIMIT}: these {tokens} are not counted"
            tokens = None
        total += tokens or 0
        if problem:
            problems.append(f"usage line {number}: {problem}")
    if len(problems) > USAGE_MAX_PROBLEMS:
        left_out = len(problems) - USAGE_MAX_PROBLEMS
        problems = [*problems[:USAGE_MAX_PROBLEMS], f"usage: {left_out} more problem(s) not listed"]
    return RunUsage(total, tuple(problems))


_LIMIT = "10**12"  # USAGE_TOKENS_LIMIT as messages spell it


@dataclass(frozen=True, slots=True)
class _Loaded:
    value: object


def _load(line: str) -> _Loaded | str:
    """The line's JSON value, or why it is not JSON."""
    try:
        return _Loaded(json.loads(line))
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        return f"not JSON: {exc}"
    except RecursionError:
        return "not JSON: nested too deeply"


def _usage_line(line: str) -> tuple[int | None, str]:
    """``(tokens or None, problem or "")`` for one non-blank usage line."""
    loaded = _load(line)
    if not isinstance(loaded, _Loaded):
        return None, loaded
    value = loaded.value
    if not isinstance(value, dict):
        return None, f'expected a JSON object like {{"tokens": 512}}, not {_short(value)}'
    unknown = ", ".join(_short(k) for k in value if k != "tokens")
    if "tokens" not in value:
        return None, 'no "tokens"' + (f" (has {unknown})" if unknown else "")
    tokens = value["tokens"]
    if type(tokens) is not int or not 0 <= tokens < USAGE_TOKENS_LIMIT:
        why = f'"tokens" must be a whole number >= 0 and below {_LIMIT}, not {_short(tokens)}'
        return None, why
    return tokens, (f'unknown key(s) {unknown} ignored (its "tokens" counted)' if unknown else "")


def _short(value: object, limit: int = 40) -> str:
    """``value`` as JSON text, cut to ``limit`` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_log(path: Path, tail_bytes: int | None = None) -> str:
    """A run's output log as text, its last ``tail_bytes`` bytes if given; raises
    :class:`OSError` (:class:`FileNotFoundError` where there is no log yet).

    Only a regular file is read, never through a symbolic link: the job owns its run
    directory, and must not make the platform read (or block on) anything else for it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if tail_bytes is not None:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
        data = f.read()
    return data.decode("utf-8", errors="replace")


def read_usage_file(path: Path) -> RunUsage:
    """Parse a run's usage file; an empty usage if there is none.

    Reads at most :data:`USAGE_FILE_MAX_BYTES` (a larger file is a problem, and only its whole
    lines within the limit count). Only a regular file is read, never through a symbolic link
    (the job controls the file: it must not make the platform read, or block on, anything
    else); anything else, or a file that cannot be read, is a problem naming the path.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return RunUsage()
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        return RunUsage(problems=(f"cannot read the usage file {path}: {why}",))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return RunUsage(problems=(f"cannot read the usage file {path}: not a regular file",))
        chunks: list[bytes] = []
        size = 0
        while size <= USAGE_FILE_MAX_BYTES and (chunk := os.read(fd, 1 << 16)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        return RunUsage(problems=(f"cannot read the usage file {path}: {exc.strerror}",))
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) <= USAGE_FILE_MAX_BYTES:
        return parse_usage(data.decode("utf-8", errors="replace"))
    data = data[: data.rfind(b"\n", 0, USAGE_FILE_MAX_BYTES) + 1]  # whole lines only
    usage = parse_usage(data.decode("utf-8", errors="replace"))
    too_big = (
        f"usage file {path} is larger than {USAGE_FILE_MAX_BYTES} bytes: "
        f"only its lines within the first {USAGE_FILE_MAX_BYTES} bytes were read"
    )
    return RunUsage(usage.tokens, (too_big, *usage.problems))


@runtime_checkable
class TenantAccounts(Protocol):
    """An executor that runs each tenant's jobs under an account of the tenant's own."""

    def account_for(self, tenant: str) -> str | None:
        """The account ``tenant``'s jobs run as; ``None``: this executor does not run them."""
        ...


@runtime_checkable
class Executor(Protocol):
    """Runs jobs at one center. See the module docstring for the contract."""

    name: str
    #: Seconds a run may still go on after the executor last saw it alive (its lease, with the
    #: watchdog's period): a run reported ``lost`` is given up only after this long, once it
    #: cannot still be running, and its recorded exit is read first. 0: a lost run is gone.
    stop_grace_s: float

    def submit(self, sub: Submission) -> str:
        """Start (or queue) ``sub``; return the executor's reference. Idempotent per job_id."""
        ...

    def poll(self, refs: Sequence[str]) -> dict[str, ExecutorStatus]:
        """Status of every ref in ``refs``; unknown refs are reported ``lost``."""
        ...

    def cancel(self, ref: str) -> None:
        """Stop the run (queued or running). Idempotent; a finished run is left as it is."""
        ...

    def logs(self, ref: str, tail_bytes: int | None = None) -> str:
        """The run's combined stdout and stderr; only the last ``tail_bytes`` if given."""
        ...

    def checkpoint(self, ref: str) -> str | None:
        """Ask the running job to checkpoint (send :data:`CHECKPOINT_SIGNAL`).

        Returns the directory the checkpoint will be written to, or ``None`` if this executor
        cannot checkpoint. Asynchronous: the run later reports ``migrating`` once it has exited
        with :data:`CHECKPOINT_EXIT_CODE`.
        """
        ...

    def resume(self, sub: Submission, checkpoint_dir: str) -> str:
        """Submit ``sub`` again with ``SUANWANG_RESUME_FROM=checkpoint_dir``; a new reference.

        Idempotent per ``(job_id, checkpoint_dir)``.
        """
        ...

    def capacity(self) -> Capacity:
        """Slot limits and current use."""
        ...

    def recorded_exit(self, ref: str) -> int | None:
        """The exit code the run left on durable storage when it ended, or ``None``.

        Must answer without the backend's scheduler (it is asked when that is unreachable):
        failover finishes a job whose lost run had in fact completed instead of running it
        again.
        """
        ...

    def reported_usage(self, ref: str) -> RunUsage:
        """What the run reported it served in ``$SUANWANG_USAGE_FILE`` (see the module docstring).

        Like :meth:`recorded_exit`, read from durable storage (the run's directory), never from
        the backend's scheduler; an empty usage for an unknown ref or a run that wrote no file.
        """
        ...
