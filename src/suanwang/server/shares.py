"""Centers shared among workers: each center's hand-over, polling and failover by one worker,
rebalanced as workers come and go (docs/operations.md, "Centers shared among workers").

* **Who should hold a center.** Among the live members that serve it (their executors reach
  it; heartbeat fresher than :data:`~suanwang.server.cluster.STALE_AFTER_S`), the one that
  ranks first for it by rendezvous hashing (:func:`holder_of`): every member computes the same
  answer from the same list, a member joining takes about ``1/n`` of the centers and one
  leaving gives up only its own.
* **Holding it.** A member holds a center while it holds the center's PostgreSQL advisory lock
  (``pg_try_advisory_lock`` on a connection it keeps for nothing else). It lets go of the
  centers it should no longer hold before it takes new ones, and takes one only when the lock
  is free, so two members never hold one center, even while their member lists disagree; a
  member that dies frees its locks with its connection, and its centers are taken by the next
  in rank once its heartbeat is stale.
* **Knowing it still holds.** Each refresh first uses the lock connection, even with nothing
  to take or let go: a connection that died (the server restarted, the session was ended)
  took the member's locks with it, and the member holds nothing from then on instead of
  believing it still holds its centers while a member joining takes them.
* **SQLite** (one process): everything is held here (:class:`LocalShares`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine, TextClause, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from suanwang.server.cluster import STALE_AFTER_S, close_lock_connection, lock_connection
from suanwang.server.database.models import ClusterMember

log = logging.getLogger("suanwang.shares")

#: First key of the centers' advisory locks ("SWCE"); the second is the center's hash.
LOCK_NAMESPACE = 0x53574345


def rank(center: str, member: str) -> bytes:
    """``member``'s rank for ``center`` (the highest holds it)."""
    return hashlib.sha256(f"{center}\x00{member}".encode()).digest()


def holder_of(center: str, members: Iterable[str]) -> str | None:
    """The member that should hold ``center`` among ``members`` (None: none serves it)."""
    return max(members, key=lambda m: rank(center, m), default=None)


class Shares(Protocol):
    """Which centers this process holds."""

    def held(self) -> frozenset[str] | None:
        """The centers held here now (None: every center, nothing is shared)."""
        ...

    def refresh(self) -> frozenset[str] | None:
        """Take and let go of centers by the live members now; what is held after."""
        ...

    def close(self) -> None: ...


@dataclass
class LocalShares:
    """SQLite (or a single process): every center is served here."""

    def held(self) -> frozenset[str] | None:
        return None

    def refresh(self) -> frozenset[str] | None:
        return None

    def close(self) -> None:
        pass


@dataclass
class PgShares:
    """PostgreSQL: this member's share of ``serves`` (see the module docstring).

    ``member`` is this process's :class:`~suanwang.server.cluster.Member` id; ``sessions``
    read the members' heartbeats on ``clock``. Thread-safe: the cluster loop refreshes, the
    services read :meth:`held`.
    """

    engine: Engine
    sessions: sessionmaker[Session]
    member: str
    serves: frozenset[str]
    clock: Callable[[], datetime]
    _conn: Connection | None = field(default=None, init=False, repr=False)
    _held: frozenset[str] = field(default=frozenset(), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    #: the lock connection's server process (what ``pg_terminate_backend`` takes)
    backend_pid: int | None = field(default=None, init=False)

    def held(self) -> frozenset[str] | None:
        with self._lock:
            return self._held

    def live_members(self) -> dict[str, frozenset[str]]:
        """Each live member that serves centers, with the centers it serves (this one too)."""
        since = self.clock() - timedelta(seconds=STALE_AFTER_S)
        with self.sessions() as session:
            rows = session.execute(
                select(ClusterMember.id, ClusterMember.serves).where(
                    ClusterMember.heartbeat_at >= since, ClusterMember.serves.is_not(None)
                )
            ).all()
        members = {str(m): frozenset(s or ()) for m, s in rows}
        members[self.member] = self.serves
        return members

    def refresh(self) -> frozenset[str] | None:
        with self._lock:
            try:
                members = self.live_members()
                want = frozenset(
                    c
                    for c in self.serves
                    if holder_of(c, [m for m, s in members.items() if c in s]) == self.member
                )
                conn = self._connection()
                conn.execute(text("SELECT 1"))  # it answers, or raises: the locks are gone
                for center in sorted(self._held - want):  # let go first
                    conn.scalar(self._sql("pg_advisory_unlock"), {"c": center})
                    log.info("no longer holds center %s (rebalanced)", center)
                held = self._held & want
                for center in sorted(want - held):
                    if conn.scalar(self._sql("pg_try_advisory_lock"), {"c": center}):
                        held |= {center}
                        log.info("holds center %s", center)
                self._held = held
            except DBAPIError as exc:
                self._drop(f"the database connection failed ({exc.orig or exc})")
            return self._held

    @staticmethod
    def _sql(fn: str) -> TextClause:
        return text(f"SELECT {fn}({LOCK_NAMESPACE}, hashtext(current_schema() || '/' || :c))")

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn, self.backend_pid = lock_connection(self.engine)
        return self._conn

    def _drop(self, why: str, level: int = logging.WARNING) -> None:
        """Hold nothing: close the lock connection (the server frees its locks)."""
        if self._held:
            log.log(level, "no longer holds centers %s: %s", ", ".join(sorted(self._held)), why)
        self._held = frozenset()
        conn, self._conn, self.backend_pid = self._conn, None, None
        close_lock_connection(conn)

    def close(self) -> None:
        """Let every center go at once (the lock connection is closed, not pooled)."""
        with self._lock:
            self._drop("stopping", logging.INFO)


def shares_for(
    engine: Engine,
    sessions: sessionmaker[Session],
    member: str,
    serves: Iterable[str],
    clock: Callable[[], datetime],
) -> Shares:
    """PostgreSQL shares centers among workers (:class:`PgShares`); SQLite serves them all."""
    if engine.dialect.name == "postgresql":
        return PgShares(engine, sessions, member, frozenset(serves), clock)
    return LocalShares()
