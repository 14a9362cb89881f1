"""One sync of a center's agent (``POST /v1/agents/{center}/sync``): record what it reports,
answer what it must do (:mod:`suanwang.agent.protocol`).

In one transaction, with the center's agent record locked (two syncs of one center never
interleave):

* a numbered sync (protocol 2) whose number is not above the highest applied for the center is
  refused (:class:`StaleSync`, nothing recorded): a late copy of a sync already superseded,
  which would otherwise record ``lost`` the runs the agent started since; the number of one
  applied is stored. A sync without a number (an agent of protocol 1) is applied as it comes;
* the agent's version, capacity and the time are recorded (``last_seen``);
* each run it reports updates that run's record, until the run has ended (``succeeded``,
  ``failed``, ``cancelled``, ``migrating``, ``lost``): then the agent is told to forget it
  (its end stays recorded here) and later reports of it are ignored;
* a run handed to the agent that it does not report: if it never reported it, it is to be
  started (or, if cancelled meanwhile, it is recorded cancelled without ever starting); if it
  reported it before, the agent no longer holds it: it is recorded ``lost``;
* a run the agent reports that the control plane never handed it is to be cancelled and
  forgotten;
* runs whose job was cancelled are to be cancelled, runs asked to checkpoint (and running) to
  checkpoint.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.agent.protocol import LOG_TAIL_BYTES, RunReport, StartRun, SyncAnswer, SyncRequest
from suanwang.core.lifecycle import JobState
from suanwang.executors.base import CENTER
from suanwang.server.agents.tokens import agent_row
from suanwang.server.database.models import AgentRun

#: States in which a run has ended (its agent may forget it).
ENDED = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.MIGRATING, JobState.LOST}
)
RUN, CANCEL, CHECKPOINT = "run", "cancel", "checkpoint"


class NotAnAgentCenter(Exception):
    """The center is not served through an agent (no worker declared it one)."""


class StaleSync(Exception):
    """A sync numbered ``seq``, not above ``applied``, the highest applied for the center."""

    def __init__(self, center_id: str, seq: int, applied: int) -> None:
        super().__init__(
            f"stale sync: number {seq} is not above {applied}, the last applied for center "
            f"{center_id} (a late copy of a sync superseded since, or the agent numbers below "
            "its record): nothing recorded"
        )
        self.seq, self.applied = seq, applied


def tail(text: str, limit: int = LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of ``text`` (UTF-8), whole characters only."""
    data = text.encode("utf-8", errors="replace")
    return text if len(data) <= limit else data[-limit:].decode("utf-8", errors="ignore")


def record_report(row: AgentRun, report: RunReport, now: datetime) -> None:
    """What the agent says of a run, on its record."""
    row.state = report.state.value
    row.exit_code = report.exit_code
    row.started_at = report.started_at
    row.ended_at = report.ended_at
    row.reason = report.reason
    row.cause = report.cause
    if report.usage is not None:
        row.usage = report.usage.model_dump()
    if report.log_tail is not None:
        row.log_tail = tail(report.log_tail)
    row.updated_at = now


def sync(session: Session, center_id: str, request: SyncRequest, now: datetime) -> SyncAnswer:
    """Record ``request`` from the agent of ``center_id`` and answer it (the caller commits).
    Raises :class:`NotAnAgentCenter` when no worker serves the center through an agent, and
    :class:`StaleSync` (having changed nothing) when the sync's number is not above the last."""
    agent = agent_row(session, center_id, now)
    if agent.lease_s is None:
        raise NotAnAgentCenter(center_id)
    if request.seq is not None:
        if agent.applied_seq is not None and request.seq <= agent.applied_seq:
            raise StaleSync(center_id, request.seq, agent.applied_seq)
        agent.applied_seq = request.seq
    agent.last_seen = now
    agent.agent_version = request.version
    agent.every_s = request.every_s
    if request.capacity is not None:
        agent.capacity = request.capacity.model_dump()
    rows = session.scalars(
        select(AgentRun)
        .where(AgentRun.center_id == center_id, AgentRun.done.is_(False))
        .order_by(AgentRun.id)
        .with_for_update()
    ).all()
    held = {r.ref: r for r in rows}
    reported = {r.ref: r for r in request.runs}
    answer = SyncAnswer(lease_s=agent.lease_s)
    strangers = [ref for ref in reported if ref not in held]
    if strangers:
        known = set(
            session.scalars(
                select(AgentRun.ref).where(
                    AgentRun.center_id == center_id, AgentRun.ref.in_(strangers)
                )
            )
        )
        for ref in strangers:
            if ref not in known and reported[ref].state not in ENDED:
                answer.cancel.append(ref)  # never handed to it: it must not run
            answer.forget.append(ref)
    for row in rows:
        report = reported.get(row.ref)
        if report is None:
            _not_reported(row, center_id, answer, now)
            continue
        record_report(row, report, now)
        if report.state in ENDED:
            row.done = True
            answer.forget.append(row.ref)
        elif row.ask == CANCEL:
            answer.cancel.append(row.ref)
        elif row.ask == CHECKPOINT and report.state is JobState.RUNNING:
            answer.checkpoint.append(row.ref)
    return answer


def _not_reported(row: AgentRun, center_id: str, answer: SyncAnswer, now: datetime) -> None:
    if row.state is None and row.ask == CANCEL:
        row.state, row.reason = JobState.CANCELLED.value, "cancelled before its agent started it"
        row.ended_at = row.updated_at = now
        row.done = True
    elif row.state is None:
        answer.start.append(
            StartRun(ref=row.ref, submission=row.submission, resume_from=row.resume_from)
        )
    else:
        row.state = JobState.LOST.value
        row.reason = f"the agent of center {center_id} no longer holds this run"
        row.cause = CENTER
        row.exit_code = None
        row.updated_at = now
        row.done = True
