"""Per-center agent tokens: made by an operator (``suanwang agent token create``), shown once,
stored hashed like API keys (:func:`~suanwang.server.models.keys.hash_key`); a token acts only
for its own center."""

from __future__ import annotations

import hmac
import re
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanwang.server.database.models import CenterAgent
from suanwang.server.models.keys import hash_key

TOKEN_PREFIX = "swa_"
#: A center id as the platform file and the agent's path use it.
CENTER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: Longer strings cannot be tokens; they are refused before hashing.
MAX_TOKEN_LENGTH = 200


def agent_row(session: Session, center_id: str, now: datetime) -> CenterAgent:
    """The center's agent record, made if it has none (locked for this transaction)."""
    row = session.scalars(
        select(CenterAgent).where(CenterAgent.center_id == center_id).with_for_update()
    ).one_or_none()
    if row is None:
        row = CenterAgent(center_id=center_id, created_at=now)
        session.add(row)
        session.flush()
    return row


def issue_token(session: Session, center_id: str, now: datetime) -> str:
    """A new token for the agent of ``center_id`` (any earlier one stops working); the
    caller commits. Only its hash is stored."""
    if not CENTER_PATTERN.fullmatch(center_id):
        raise ValueError(f"center id {center_id!r}: use letters, digits, '_', '.', '-'")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    agent_row(session, center_id, now).token_hash = hash_key(token)
    return token


def center_of_token(session: Session, token: str) -> str | None:
    """The center whose agent holds ``token`` (None: no center's)."""
    if len(token) > MAX_TOKEN_LENGTH or not token.startswith(TOKEN_PREFIX):
        return None
    digest = hash_key(token)
    row = session.scalars(select(CenterAgent).where(CenterAgent.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash or "", digest):
        return None
    return row.center_id
