"""The agent protocol: one call, ``POST /v1/agents/{center}/sync``, made by the agent.

The agent sends (:class:`SyncRequest`) its version, its center's capacity and the status of
every run it holds; the control plane records them and answers (:class:`SyncAnswer`) what the
agent must do: start these runs (their submissions), cancel, checkpoint, forget (their end is
recorded), and the lease: how long the agent may keep its runs going without a successful sync.

Every sync carries the whole state (every run the agent holds), so a lost answer or request
costs nothing: the next sync says it all again, and each instruction is idempotent.

The agent names the protocol it speaks in the header :data:`PROTOCOL_HEADER`; a control plane
that speaks another refuses it (409) before reading the body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from suanwang.core.lifecycle import JobState

#: The protocol this version speaks; a change that an older peer cannot read gets a new number.
PROTOCOL_VERSION = 1
PROTOCOL_HEADER = "Suanwang-Agent-Protocol"
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
    version: Annotated[str, Field(min_length=1, max_length=40)]
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
