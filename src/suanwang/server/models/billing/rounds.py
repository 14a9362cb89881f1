"""Billing's rounds over many jobs: each job in its own transaction, its row locked."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from suanwang.billing.pricing import NoPrice
from suanwang.server.database.models import JobRow

log = logging.getLogger("suanwang.billing")


def one_by_one(
    sessions: sessionmaker[Session],
    ids: list[str],
    what: str,
    work: Callable[[Session, JobRow], bool],
) -> int:
    """``work`` on each unbilled job in its own transaction, its row taken ``FOR UPDATE SKIP
    LOCKED`` (a job another worker has is skipped); returns for how many ``work`` was true.

    A job the served scenario cannot rate (e.g. stored under another scenario), or one the
    database refuses, must not hold up everyone else's: it is logged and left as it is (its
    transaction rolled back).
    """
    done = 0
    for job_id in ids:
        try:
            with sessions.begin() as session:
                job = session.scalar(
                    select(JobRow)
                    .where(JobRow.id == job_id, JobRow.billed_at.is_(None))
                    .with_for_update(skip_locked=True)
                )
                if job is not None and work(session, job):
                    done += 1
        except (NoPrice, KeyError, ValueError, ArithmeticError, SQLAlchemyError) as exc:
            log.error("cannot %s job %s: %s: %s", what, job_id, exc.__class__.__name__, exc)
    return done
