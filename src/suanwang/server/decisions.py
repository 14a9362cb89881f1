"""The stored placement decision: its typed schema, and how a placement becomes one.

The dispatcher stores, with every placement, the explanation the placement seam returned
(:class:`suanwang.scheduling.placement.Placement`): the objective the policy compared, term
by term, for the chosen candidate and the best runners-up (each with why it lost), the
deferral and its gain, and the market price it was placed at. A job no center can run stores
``placed: false`` with the pools each constraint excluded. The API, the CLI and the console
read it through :class:`DecisionPublic`. Fields added later are optional, so decisions stored
by older versions still read.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from suanwang.scheduling.placement import Breakdown, Placement


class CandidatePublic(BaseModel):
    """One candidate (pool and start), forecast at placement. CNY unless named otherwise."""

    model_config = ConfigDict(extra="ignore")

    center: str
    accelerator: str
    start_at: datetime | None = None
    runtime_s: float
    objective_cny: float | None = Field(
        default=None, description="the sum the policy minimises: energy + carbon + transfer "
        "+ waiting + offer premium",
    )  # fmt: skip
    cost_cny: float = Field(description="money: energy + data transfer")
    energy_cost_cny: float
    carbon_cost_cny: float | None = Field(default=None, description="carbon kg x carbon price")
    transfer_cost_cny: float
    waiting_cost_cny: float | None = Field(default=None, description="waiting price x delay")
    offer_premium_cny: float | None = Field(
        default=None, description="an offer's price against the posted price (negative: saves)"
    )
    energy_kwh: float
    carbon_kg: float
    green_share: float | None = None
    price_cny_per_kwh: float | None = Field(default=None, description="in the start hour")
    transfer_s: float | None = None
    latency_ms: float
    free_units: int
    lost: str | None = Field(default=None, description="why this runner-up was not chosen")


class MarketPublic(BaseModel):
    """The trade a job was placed under (billing charges its run at this price)."""

    source: Literal["offer", "reservation"]
    price_cny_per_scu: float
    posted_cny_per_scu: float


class AvoidedPublic(BaseModel):
    """The centers a placement kept a job away from: its executor there reported a run of it
    lost while the center answered (docs/centers.md, "A run lost at an answering center")."""

    centers: list[str]
    back: bool = Field(description="placed at one of them all the same: no other could run it")
    reason: str


class DecisionPublic(BaseModel):
    """Why a job runs where and when it does, or why it cannot run anywhere."""

    model_config = ConfigDict(extra="ignore")

    placed: bool = True
    policy: str | None = None
    reason: str
    start_at: datetime | None = None
    deferred_h: float = 0.0
    gain_cny: float | None = Field(
        default=None, description="what a deferral saves against the best start now with room"
    )
    objective_cny: float | None = Field(default=None, description="what the policy compared")
    queued: bool = False
    chosen: CandidatePublic | None = None
    runners_up: list[CandidatePublic] = Field(default_factory=list)
    if_started_now: CandidatePublic | None = None
    market: MarketPublic | None = None
    waiting: str | None = Field(
        default=None,
        description="a pending job under quotas (not placed yet): why it waits — capacity, "
        "quota used up, waiting for its share (docs/governance.md)",
    )
    excluded: dict[str, int] | None = Field(
        default=None, description="not placed: pools each hard constraint excluded"
    )
    avoided: AvoidedPublic | None = Field(
        default=None,
        description="centers where the job lost runs while they answered, which this "
        "placement kept away from (or came back to: no other open center could run it)",
    )


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


#: an instant as the API's models write it in JSON (``...Z``), without building a model
_INSTANT: TypeAdapter[datetime] = TypeAdapter(datetime)


def _instant(t0: datetime, start_s: float, said: dict[float, str]) -> str:
    """``t0 + start_s`` as stored; ``said``: those worked out already for this decision (its
    candidates mostly share a start)."""
    text = said.get(start_s)
    if text is None:
        text = said[start_s] = _INSTANT.dump_python(t0 + timedelta(seconds=start_s), mode="json")
    return text


def candidate(row: Breakdown, t0: datetime, said: dict[float, str] | None = None) -> dict[str, Any]:
    """The stored form of a breakdown: what :class:`CandidatePublic` dumps (``mode="json"``,
    no None), built directly, as the dispatcher stores thousands a round (a test checks the
    two agree). ``said``: instants already written (:func:`_instant`)."""
    out: dict[str, Any] = {
        "center": row.center,
        "accelerator": row.accelerator,
        "start_at": _instant(t0, row.start_s, {} if said is None else said),
        "runtime_s": row.runtime_s,
        "objective_cny": row.objective_cny,
        "cost_cny": row.cost_cny,
        "energy_cost_cny": row.energy_cost_cny,
        "carbon_cost_cny": row.carbon_cost_cny,
        "transfer_cost_cny": row.transfer_cost_cny,
        "waiting_cost_cny": row.waiting_cost_cny,
        "offer_premium_cny": row.offer_premium_cny,
        "energy_kwh": row.energy_kwh,
        "carbon_kg": row.carbon_kg,
        "green_share": row.green_share,
        "price_cny_per_kwh": row.price_cny_per_kwh,
        "transfer_s": row.transfer_s,
        "latency_ms": row.latency_ms,
        "free_units": row.free_units,
    }
    if row.lost:
        out["lost"] = row.lost
    return out


def decision_record(
    placed: Placement, policy: str, t0: datetime, market: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON stored with a placement (``t0``: the signals' start, second 0 of the plan):
    what :class:`DecisionPublic` dumps (``mode="json"``, no None)."""
    said: dict[float, str] = {}
    out: dict[str, Any] = {
        "placed": True,
        "policy": policy,
        "reason": placed.reason,
        "start_at": _instant(t0, placed.start_s, said),
        "deferred_h": round(placed.deferred_s / 3600.0, 3) if placed.deferred else 0.0,
    }
    gain, objective = _finite(placed.gain_cny), _finite(placed.objective_cny)
    if gain is not None:
        out["gain_cny"] = gain
    if objective is not None:
        out["objective_cny"] = objective
    out["queued"] = placed.queued
    if placed.chosen is not None:
        out["chosen"] = candidate(placed.chosen, t0, said)
    out["runners_up"] = [candidate(r, t0, said) for r in placed.runners_up]
    if placed.if_started_now is not None:
        out["if_started_now"] = candidate(placed.if_started_now, t0, said)
    if market:
        out["market"] = MarketPublic.model_validate(market).model_dump(mode="json")
    return out
