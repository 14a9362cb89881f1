"""The audit log: write one entry per change, read it back in pages (docs/control-plane.md,
"Audit log").

An entry is written in the transaction of the change it records (:func:`record` flushes, the
caller commits both or neither), stamped by the caller's clock. Nothing here updates or
deletes an entry; the database refuses to as well (migration 0010).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from suanwang.server.database.models import AuditEntry

#: The most entries one page returns.
MAX_PAGE = 1000
#: A change's ``detail`` is at most this long as JSON (it is a summary, not a copy).
MAX_DETAIL_CHARS = 4000


@dataclass(frozen=True)
class Actor:
    """Who made a change: through the API (``via="api"``) a tenant and the prefix of the key it
    used; through a database command (``via="cli"``) the Unix user that ran it."""

    via: str
    name: str
    tenant_id: str | None = None
    key_prefix: str | None = None


def record(
    *,
    session: Session,
    actor: Actor,
    action: str,
    target: str,
    detail: dict[str, Any],
    request_id: str,
    now: datetime,
) -> AuditEntry:
    """Add one entry (flushes, does not commit). :class:`ValueError` for a ``detail`` over
    :data:`MAX_DETAIL_CHARS` as JSON (a bug of the caller: entries are summaries)."""
    if len(json.dumps(detail, default=str)) > MAX_DETAIL_CHARS:
        raise ValueError(f"audit detail of {action} over {MAX_DETAIL_CHARS} characters")
    entry = AuditEntry(
        at=now, via=actor.via, actor_tenant_id=actor.tenant_id, actor_name=actor.name[:100],
        actor_key_prefix=actor.key_prefix, action=action, target=target[:200],
        detail=json.loads(json.dumps(detail, default=str)), request_id=request_id[:64],
    )  # fmt: skip
    session.add(entry)
    session.flush()
    return entry


def entries(
    *,
    session: Session,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> tuple[list[AuditEntry], int | None]:
    """One page of entries, newest first, and the id to pass as ``before_id`` for the next page
    (None: this was the last). ``actor``: a tenant id or name, a key prefix or a Unix user;
    ``action``: exactly, or a family with a trailing dot (``"key."``); ``since`` inclusive,
    ``until`` exclusive."""
    stmt = select(AuditEntry)
    if actor is not None:
        stmt = stmt.where(
            or_(
                AuditEntry.actor_tenant_id == actor,
                AuditEntry.actor_name == actor,
                AuditEntry.actor_key_prefix == actor,
            )
        )
    if action is not None:
        stmt = stmt.where(
            AuditEntry.action.startswith(action, autoescape=True)
            if action.endswith(".")
            else AuditEntry.action == action
        )
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    rows = list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], rows[limit - 1].id


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "via": entry.via,
        "actor": {
            "tenant_id": entry.actor_tenant_id,
            "name": entry.actor_name,
            "key_prefix": entry.actor_key_prefix,
        },
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
        "request_id": entry.request_id,
    }
