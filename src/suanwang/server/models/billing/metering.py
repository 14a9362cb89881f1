"""Metering: a job's runs from its events (:func:`segments`), rated into usage lines
(:func:`meter`) by :mod:`suanwang.billing.rating` at the prices in force (a ``preemptible``
job's at the idle price, :func:`is_preemptible`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.billing import quotas, rating
from suanwang.billing.money import ZERO
from suanwang.billing.pricing import DEFAULT_IDLE_DISCOUNT
from suanwang.billing.rating import Segment, UsageLine, rate_segment
from suanwang.core.hardware import Precision
from suanwang.core.jobs import JobKind, Priority
from suanwang.core.lifecycle import NO_STATE, RUN_STOPPED, STATE_CODE, JobState, run_events
from suanwang.core.network import Network
from suanwang.server.database.models import JobEvent, JobRow
from suanwang.server.schemas import cards_of

from .trading import price_book


def precision_of(spec: dict[str, Any]) -> tuple[Precision, int]:
    res = spec.get("resources") or {}
    cards = cards_of(res)
    if cards <= 0:
        return Precision.CPU, int(res.get("cpus", 1))
    kind = spec.get("kind") or "training"
    return JobKind(kind).precision, cards


def is_preemptible(spec: dict[str, Any]) -> bool:
    """Whether a job spec is of the ``preemptible`` class (never a default: it is given)."""
    return spec.get("priority") == Priority.PREEMPTIBLE.value


def priority_of(priority: str | None, kind: str | None) -> Priority:
    """A stored spec's class: its ``priority``, else the default for its ``kind``."""
    if priority:
        return Priority(priority)
    return Priority.default_for(JobKind(kind or JobKind.TRAINING.value))


def segments(*, job: JobRow, events: list[JobEvent]) -> list[Segment]:
    """The runs of a job from its events (see :mod:`suanwang.billing.rating`), found by the
    rule the simulator's metrics use too (:func:`suanwang.core.lifecycle.run_events`).

    A run is metered on the center and chip its placement (``scheduled`` event) named, at the
    market price it recorded. A run the platform never saw ``running`` (it went from
    ``scheduled`` straight to ``succeeded`` or ``failed`` between two polls) is metered from
    its hand-over: the later of its placement and its planned start. ``scheduled ->
    cancelled`` is no run; a run still going is not metered yet. Events that keep the state
    (``running -> running`` for a checkpoint request, ``scheduled -> scheduled`` for a fence,
    ``cancelled -> cancelled`` when a cancelled run stopped) are not transitions; what a
    cancelled job's stopped run reported is that run's.
    """
    frm = [STATE_CODE[JobState(e.from_state)] if e.from_state else NO_STATE for e in events]
    to = [STATE_CODE[JobState(e.to_state)] for e in events]
    runs = run_events(np.zeros(len(events), np.int64), np.array(frm, np.int64), np.array(to))
    out: list[Segment] = []
    for begin, end, handover, placed in zip(*(r.tolist() for r in runs), strict=True):
        if end < 0:
            continue  # still running
        first, last = events[begin], events[end]
        detail = events[placed].detail or {} if placed >= 0 else {}
        center = str(detail.get("center") or job.center_id or "")
        pool = detail.get("pool")
        model = str(pool) if pool else (job.pool_model if center == job.center_id else None)
        started, run_event = first.at, first.id
        if handover:  # metered from its hand-over, at most to its end
            s = detail.get("start_at")
            planned = datetime.fromisoformat(s) if isinstance(s, str) else None
            started = min(max(first.at, planned) if planned else first.at, last.at)
            run_event = last.id
        ended = (last.detail or {}).get("event") == rating.PREEMPTED  # stopped, work lost
        out.append(
            _segment(len(out), center, model, job, started, last.at, JobState(last.to_state),
                     run_event, market_of(detail), tokens_of(last.detail or {}),
                     end_state=rating.PREEMPTED if ended else None)
        )  # fmt: skip
    for ev in events:  # what a cancelled job's run reported once it had stopped
        stopped = ev.from_state == ev.to_state and (ev.detail or {}).get("event") == RUN_STOPPED
        if stopped and out and out[-1].end_state == JobState.CANCELLED.value:
            out[-1] = replace(out[-1], tokens=out[-1].tokens + tokens_of(ev.detail or {}))
    return out


def tokens_of(detail: dict[str, Any]) -> int:
    """Tokens the run reported serving, from the detail of the event that ended it
    (``{"usage": {"tokens": N}}``, written by the reconciler); 0 if none or malformed."""
    usage = detail.get("usage")
    n = usage.get("tokens") if isinstance(usage, dict) else None
    if isinstance(n, int) and not isinstance(n, bool) and 0 < n < quotas.MAX_TOKENS:
        return n
    return 0


def market_of(detail: dict[str, Any]) -> str | None:
    """How the dispatcher priced a placement, from its ``scheduled`` event: ``"offer"``,
    ``"reservation"`` or None (the posted price)."""
    m = detail.get("market")
    return str(m["source"]) if isinstance(m, dict) and m.get("source") else None


def _segment(
    seq: int,
    center: str | None,
    model: str | None,
    job: JobRow,
    start: datetime,
    end: datetime,
    to: JobState,
    event_id: int,
    market: str | None = None,
    tokens: int = 0,
    end_state: str | None = None,
) -> Segment:
    res = (job.spec or {}).get("resources") or {}
    return Segment(
        seq=seq,
        center_id=center or job.center_id or "",
        model=model or job.pool_model or str(res.get("accelerator", "")),
        started_at=start,
        ended_at=end,
        end_state=end_state or to.value,
        run_event_id=event_id,
        market=market,
        tokens=tokens,
    )


def meter(
    *,
    session: Session,
    job: JobRow,
    net: Network,
    energy_pass_through: bool = False,
    idle_discount: Decimal = DEFAULT_IDLE_DISCOUNT,
) -> list[UsageLine]:
    """Rate every run of ``job`` (pure apart from reading its events); a ``preemptible`` job
    at the idle price (``idle_discount``: the platform's setting)."""
    events = list(
        session.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id))
    )
    segs = segments(job=job, events=events)
    precision, units = precision_of(job.spec)
    # offers replace posted prices in their windows
    since = min((seg.started_at for seg in segs), default=None)
    book = price_book(session=session, scenario=net.scenario, since=since)
    lines: list[UsageLine] = []
    preemptible = is_preemptible(job.spec)
    data_gb = Decimal(repr(float(job.spec.get("data_gb") or 0.0)))
    origin = str(job.spec.get("origin", ""))
    for seg in segs:
        first = not lines
        link = ZERO
        if first and data_gb > 0 and seg.center_id in net.center_index:
            p, c = net.place(origin), net.center_index[seg.center_id]
            link = Decimal(repr(float(net.transfer_cost_cny_per_gb[p, c])))
        lines.append(
            rate_segment(
                book,
                seg,
                precision=precision,
                units=units,
                data_gb=data_gb if first else ZERO,
                transfer_cny_per_gb=link,
                energy_pass_through=energy_pass_through,
                tenant=job.tenant_id,
                stored_gb=data_gb,
                preemptible=preemptible,
                idle_discount=idle_discount,
            )
        )
    return lines
