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

Environment every job gets: ``SUANWANG_JOB_ID``, ``SUANWANG_CHECKPOINT_DIR``, ``SUANWANG_CARDS``
(number of accelerator cards held), ``SUANWANG_CPUS`` and, on resume, ``SUANWANG_RESUME_FROM``.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

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
    and sent back there later starts afresh instead of finding its dead first run.
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


@dataclass(frozen=True, slots=True)
class ExecutorStatus:
    """One run as its executor sees it. Times are UTC-aware; ``reason`` explains the state."""

    ref: str
    state: JobState
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = ""


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
