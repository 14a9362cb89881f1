"""Centers' reachability as the workers holding them report it (table ``center_health``,
migration 0014): since when each center has not answered (None: it answers), the last error,
and which member said so when. With centers shared among workers
(:mod:`suanwang.server.shares`) only a center's holder calls it; every other worker, the
placer above all, acts on what the holder reported."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.server.database.models import CenterHealthRow


@dataclass(frozen=True, slots=True)
class Reported:
    """A center's reachability as last reported."""

    down_since: datetime | None
    reason: str
    by: str
    at: datetime


def report_health(
    *,
    session: Session,
    down: Mapping[str, tuple[datetime, str]],
    answering: frozenset[str],
    member: str,
    now: datetime,
) -> None:
    """Record the centers in ``down`` (since when, why) as not answering and those in
    ``answering`` as answering, reported by ``member`` at ``now``. A center's ``down_since``
    is kept while it stays down (the first failure counts, whoever reports it)."""
    centers = set(down) | answering
    rows = {
        r.center_id: r
        for r in session.scalars(
            select(CenterHealthRow).where(CenterHealthRow.center_id.in_(centers))
        )
    }
    for center in sorted(centers):
        row = rows.get(center)
        if row is None:
            row = CenterHealthRow(center_id=center, down_since=None, reason="")
            session.add(row)
        if center in down:
            since, why = down[center]
            if row.down_since is None or since < row.down_since:
                row.down_since = since
            row.reason = why
        else:
            row.down_since, row.reason = None, ""
        row.reported_by, row.reported_at = member, now


def reported_health(*, session: Session) -> dict[str, Reported]:
    """Every center's last report."""
    return {
        r.center_id: Reported(r.down_since, r.reason, r.reported_by, r.reported_at)
        for r in session.scalars(select(CenterHealthRow))
    }
