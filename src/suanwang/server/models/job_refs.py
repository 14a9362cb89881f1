"""A job named by its id or by a prefix of it, as ``git`` names commits.

Job ids are UUIDs in canonical lower-case form (``f873d3a1-5c2e-4b7a-...``); lists show them
cut short, so every route that takes a job id also takes an unambiguous prefix of at least
:data:`MIN_PREFIX` characters (case-insensitive, hyphens where the id has them). A prefix is
resolved with one range query on the primary key (``prefix <= id < next prefix``), among the
jobs the tenant may see only: another tenant's job never matches and never makes a prefix
ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, false, func, select
from sqlalchemy.orm import Session

from suanwang.server.database.models import JobRow, Tenant
from suanwang.server.models.jobs import _is_uuid, _visible_to, get_job

#: The shortest prefix resolved (as git's default abbreviation).
MIN_PREFIX = 4
#: Matching jobs named when a prefix is ambiguous.
MAX_CANDIDATES = 10
_HEX = "0123456789abcdef"
_HYPHENS = (8, 13, 18, 23)  # where a canonical UUID has them


@dataclass(frozen=True)
class Candidate:
    """A job a prefix matches: enough to tell it from the others."""

    id: str
    name: str
    state: str


class AmbiguousJobId(LookupError):
    """A prefix that matches several jobs; ``candidates`` are the first of them by id."""

    def __init__(self, prefix: str, candidates: list[Candidate], more: bool) -> None:
        self.prefix = prefix
        self.candidates = candidates
        self.more = more
        many = f"more than {len(candidates)}" if more else str(len(candidates))
        super().__init__(
            f"job id prefix {prefix!r} is ambiguous: {many} jobs match; give more characters"
        )


def is_prefix(text: str) -> bool:
    """Whether ``text`` (lower-case) can begin a canonical UUID."""
    return 0 < len(text) <= 36 and all(
        c == "-" if i in _HYPHENS else c in _HEX for i, c in enumerate(text)
    )


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """``(low, high)``: an id begins with ``prefix`` iff ``low <= id < high`` (no ``high``:
    every id from ``low`` on). ``high`` is the prefix with its last hex digit raised by one
    (carrying past ``f``), so the range holds in byte order and in any collation that orders
    hex digits as they are in ASCII, at the same hyphen positions."""
    digits = list(prefix.rstrip("-"))
    while digits:
        last = digits.pop()
        if last == "-":
            continue
        if last != "f":
            return prefix, "".join(digits) + _HEX[_HEX.index(last) + 1]
    return prefix, None


def prefix_query(tenant: Tenant, prefix: str, limit: int) -> Select[str, str, str]:
    """The visible jobs whose id begins with ``prefix`` (checked by :func:`is_prefix`), by id."""
    low, high = prefix_bounds(prefix)
    # The visibility test is wrapped so that no index serves it and the id's index does:
    # SQLite, without statistics, would rather walk all of a tenant's jobs by the tenant's
    # index, though a prefix of MIN_PREFIX hex digits keeps 1/65536 of the ids.
    visible = func.coalesce(_visible_to(tenant), false())
    stmt = select(JobRow.id, JobRow.name, JobRow.state).where(JobRow.id >= low, visible)
    if high is not None:
        stmt = stmt.where(JobRow.id < high)
    return stmt.order_by(JobRow.id).limit(limit)


def resolve_job(*, session: Session, tenant: Tenant, ref: str) -> JobRow | None:
    """The job ``ref`` names among those ``tenant`` may see: its id, or a prefix of at least
    :data:`MIN_PREFIX` characters that only it has; None if none matches (or ``ref`` is too
    short or not part of an id). Raises :class:`AmbiguousJobId` if several match."""
    if _is_uuid(ref):
        return get_job(session=session, tenant=tenant, job_id=ref)
    prefix = ref.lower()
    if len(prefix) < MIN_PREFIX or not is_prefix(prefix):
        return None
    rows = session.execute(prefix_query(tenant, prefix, MAX_CANDIDATES + 1)).all()
    if not rows:
        return None
    if len(rows) > 1:
        found = [Candidate(r.id, r.name, r.state) for r in rows[:MAX_CANDIDATES]]
        raise AmbiguousJobId(ref, found, more=len(rows) > MAX_CANDIDATES)
    return get_job(session=session, tenant=tenant, job_id=rows[0].id)
