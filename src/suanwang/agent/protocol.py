"""The agent protocol: one call, ``POST /v1/agents/{center}/sync``, made by the agent.

The agent sends (:class:`SyncRequest`) its version, its center's capacity and the status of
every run it holds; the control plane records them and answers (:class:`SyncAnswer`) what the
agent must do: start these runs (their submissions), cancel, checkpoint, forget (their end is
recorded), and the lease: how long the agent may keep its runs going without a successful sync.

Every sync carries the whole state (every run the agent holds), so a lost answer or request
costs nothing: the next sync says it all again, and each instruction is idempotent.

Every sync of an agent of protocol 2 carries a number (``seq``) above that of every sync it sent
before (:meth:`~suanwang.agent.state.AgentState.next_seq`). The control plane applies a sync only
if its number is above the highest it applied for that center, and answers any other with the
stale refusal (409, the highest applied in the header :data:`APPLIED_HEADER`), recording
nothing: a late copy of a sync (held up at a replica while a newer one went through another)
can no longer undo the newer one. So an agent may send a sync to another replica after any
failure (:mod:`suanwang.agent.replicas`). An agent that reads the stale refusal itself is
numbering below the control plane's record (its state file lost while its clock went back): it
goes on above the number in the header.

The agent names the protocol it speaks in the header :data:`PROTOCOL_HEADER`; a control plane
refuses one that speaks none of :data:`ACCEPTED_PROTOCOLS` (409) before reading the body.
Protocol 1 (agents older than sync numbers) has no ``seq``: its syncs are applied as they come.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from suanwang.core.lifecycle import JobState

#: The protocol this version speaks; a change that an older peer cannot read gets a new number.
#: 2: syncs are numbered (``seq``); a control plane of protocol 1 refuses such an agent.
PROTOCOL_VERSION = 2
#: The protocols a control plane of this version serves (1: agents without sync numbers).
ACCEPTED_PROTOCOLS = (1, 2)
PROTOCOL_HEADER = "Suanwang-Agent-Protocol"
#: The header of the stale refusal: the highest sync number the control plane applied.
APPLIED_HEADER = "Suanwang-Agent-Applied-Seq"
#: Sync numbers are below this (a signed 64-bit column).
MAX_SEQ = 2**63
#: The end of each run's output the control plane keeps (and an agent sends at most).
LOG_TAIL_BYTES = 256 * 1024
#: Request bodies of a sync may be this large (the API's limit for other routes is smaller).
MAX_SYNC_BODY_BYTES = 8 * 1024 * 1024
#: An agent sends at most this many bytes of log tails in one sync; the rest in the next ones.
SYNC_LOG_BUDGET_BYTES = 2 * 1024 * 1024
#: A sync reports at most this many runs.
MAX_RUNS = 10_000

Text = Annotated[str, Field(max_length=1000)]
#: The causes a run report may carry (:data:`~suanwang.executors.base.CAUSES`).
CAUSE_PATTERN = "^(lease|preempted|center)$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CapacityReport(_Model):
    slots_cpus: int = Field(ge=0)
    slots_cards: int = Field(ge=0)
    used_cpus: int = Field(ge=0)
    used_cards: int = Field(ge=0)
    cards_by_model: dict[Annotated[str, Field(max_length=100)], Annotated[int, Field(ge=0)]] = (
        Field(default_factory=dict, max_length=200)
    )


class UsageReport(_Model):
    tokens: int = Field(0, ge=0, lt=10**12)
    problems: list[Text] = Field(default_factory=list, max_length=25)


class RunReport(_Model):
    """One run as the agent sees it. ``log_tail``: the end of its output (at most
    :data:`LOG_TAIL_BYTES` bytes), or null when it has not changed since the agent last sent
    it. ``usage``: what the run reported it served (sent once it has ended). ``cause``: why a
    ``lost`` run was lost (:attr:`~suanwang.executors.base.ExecutorStatus.cause`); optional, so
    an agent older than causes still syncs (its statuses get the control plane's old text rule,
    :func:`~suanwang.server.services.runs.not_the_jobs_doing`)."""

    ref: Annotated[str, Field(min_length=1, max_length=500)]
    state: JobState
    exit_code: int | None = Field(None, ge=-(2**31), lt=2**31)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: Annotated[str, Field(max_length=4000)] = ""
    cause: Annotated[str, Field(pattern=CAUSE_PATTERN)] | None = None
    usage: UsageReport | None = None
    log_tail: Annotated[str, Field(max_length=LOG_TAIL_BYTES)] | None = None


class SyncRequest(_Model):
    """``seq``: the sync's number (see the module); required of an agent of protocol 2."""

    version: Annotated[str, Field(min_length=1, max_length=40)]
    seq: int | None = Field(None, ge=1, lt=MAX_SEQ)
    every_s: float = Field(1.0, gt=0, le=3600, description="seconds between the agent's syncs")
    capacity: CapacityReport | None = None
    runs: list[RunReport] = Field(default_factory=list, max_length=MAX_RUNS)


class StartRun(_Model):
    """A run to start (``resume_from``: resume it from that checkpoint). ``submission``: the
    fields of :class:`~suanwang.executors.base.Submission`."""

    ref: str
    submission: dict[str, Any]
    resume_from: str | None = None


class SyncAnswer(_Model):
    lease_s: float
    start: list[StartRun] = Field(default_factory=list)
    cancel: list[str] = Field(default_factory=list)
    checkpoint: list[str] = Field(default_factory=list)
    forget: list[str] = Field(default_factory=list)
