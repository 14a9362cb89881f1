"""The replicated control plane: elected singleton duties, their fences, wake-ups and the
members' heartbeats (docs/operations.md, "Replicated control plane").

* **Election.** A singleton duty (:data:`PLACEMENT`, :data:`MIGRATIONS`) is led by whoever
  holds its PostgreSQL advisory lock, taken with ``pg_try_advisory_lock`` on a connection the
  elector keeps for nothing else: when the holder dies its connection closes and the lock is
  free at once; a standby's next try (every round of the duty's loop, at most a few seconds
  apart) takes it. The lock's key is the duty and the schema (``current_schema()``), so
  several platforms may share one database. On SQLite (one process) every duty is led here
  (:class:`LocalElection`), with no fence: nothing else writes.
* **Fence.** Each election adds one to the duty's ``term`` (``leader_terms``) in its own
  transaction. The leader's write transaction reads the term ``FOR SHARE`` and is refused
  (:class:`Fenced`, rolled back) unless it is still the term it was elected with: a holder
  that was paused while its lock connection was closed and another was elected cannot write
  after it resumes. The share lock is held to the commit, so a new election cannot complete
  while a round that passed its fence is on (it gives the lock back and tries again next
  round); a paused holder's transaction is ended by the server after :data:`FENCED_IDLE_S`
  idle (``idle_in_transaction_session_timeout``, set for that transaction only).
* **Wake-ups.** A submission sends ``NOTIFY`` on :func:`channel` in its transaction;
  :class:`Wakeups` listens on a connection of its own and wakes the dispatcher's loop (it
  waits for a notification or its interval, whichever comes first).
* **Members.** Every API replica and worker records itself (:class:`Member`): kind, host,
  pid, version, start, heartbeat every :data:`HEARTBEAT_S`, the duties it leads with their
  terms, and a worker the centers it serves and holds (:mod:`suanwang.server.shares`);
  ``GET /v1/cluster`` and ``suanwang status`` show them, a heartbeat older than
  :data:`STALE_AFTER_S` marked stale.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, Engine, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from suanwang import __version__
from suanwang.server.database.models import ClusterMember, LeaderTerm, new_id

log = logging.getLogger("suanwang.cluster")

#: The singleton duties: the dispatcher's placement, drain and engine-driven migrations.
PLACEMENT = "placement"
MIGRATIONS = "migrations"
DUTIES = (PLACEMENT, MIGRATIONS)
#: First key of the advisory locks' two-key form ("SWLD"); the second is the duty's hash.
LOCK_NAMESPACE = 0x53574C44
#: Seconds a fenced transaction may sit idle before the server ends it (a paused holder): a
#: placement round is fenced just before its writes; a migrations round from its start, and
#: it waits on executors (a Slurm call may take 10 s) inside its transaction.
FENCED_IDLE_S = {PLACEMENT: 5, MIGRATIONS: 60}
#: Milliseconds an election waits for the term's row (a round of the old holder still on).
ELECTION_WAIT_MS = 500
#: Seconds between a member's heartbeats; a heartbeat older than STALE_AFTER_S is stale.
HEARTBEAT_S = 2.0
STALE_AFTER_S = 10.0
#: Members silent this long are removed by the others' heartbeats.
FORGET_AFTER = timedelta(days=1)
#: Submissions notify ``CHANNEL_PREFIX`` + the schema's name.
CHANNEL_PREFIX = "suanwang_pending."

Fence = Callable[[Session], None]


class Fenced(RuntimeError):
    """A leader's write refused: the duty's term is no longer the one it was elected with."""

    def __init__(self, duty: str, term: int, now: int | None) -> None:
        super().__init__(
            f"{duty}: this process was elected for term {term}, the term now is {now}: "
            "another was elected since, nothing written"
        )
        self.duty, self.term, self.now = duty, term, now


class Election(Protocol):
    """Who leads the singleton duties here."""

    def lead(self, duty: str) -> int | None:
        """The term this process leads ``duty`` with (elected now if it can be), else None."""
        ...

    def fence(self, duty: str, term: int) -> Fence | None:
        """The check a write transaction of ``duty`` runs (None: nothing to check)."""
        ...

    def lost(self, duty: str) -> None:
        """Give ``duty`` up (a write was fenced)."""
        ...

    def terms(self) -> dict[str, int]:
        """The duties led here and their terms."""
        ...

    def close(self) -> None: ...


@dataclass
class LocalElection:
    """SQLite: one process, which leads every duty (term 0, nothing to fence)."""

    def lead(self, duty: str) -> int | None:
        return 0

    def fence(self, duty: str, term: int) -> Fence | None:
        return None

    def lost(self, duty: str) -> None:
        pass

    def terms(self) -> dict[str, int]:
        return dict.fromkeys(DUTIES, 0)

    def close(self) -> None:
        pass


def lock_connection(engine: Engine) -> tuple[Connection, int]:
    """A connection for advisory locks only (autocommit: a lock lives as long as it does),
    and its server process's pid (what ``pg_terminate_backend`` takes)."""
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    return conn, int(conn.scalar(text("SELECT pg_backend_pid()")) or 0)


def close_lock_connection(conn: Connection | None) -> None:
    """Close a :func:`lock_connection` for good (not back to the pool): the server frees
    every lock it held."""
    if conn is not None:
        try:
            conn.invalidate()
            conn.close()
        except DBAPIError:
            pass


@dataclass
class PgElection:
    """PostgreSQL: advisory locks on a connection of their own (see the module docstring).

    ``member`` names this process in ``leader_terms.holder``; ``clock`` stamps elections.
    Thread-safe (the loops of several duties share it).
    """

    engine: Engine
    member: str
    clock: Callable[[], datetime]
    _conn: Connection | None = field(default=None, init=False, repr=False)
    _terms: dict[str, int] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    #: the lock connection's server process (its pid: what ``pg_terminate_backend`` takes)
    backend_pid: int | None = field(default=None, init=False)

    def lead(self, duty: str) -> int | None:
        with self._lock:
            try:
                conn = self._connection()
                if duty in self._terms:
                    conn.execute(text("SELECT 1"))  # the lock lives as long as the connection
                    return self._terms[duty]
                got = conn.scalar(
                    text("SELECT pg_try_advisory_lock(:ns, hashtext(current_schema() || :d))"),
                    {"ns": LOCK_NAMESPACE, "d": "/" + duty},
                )
                if not got:
                    return None
                try:
                    term = self._elect(duty)
                except DBAPIError as exc:  # e.g. the old holder's round still holds the term
                    conn.execute(
                        text("SELECT pg_advisory_unlock(:ns, hashtext(current_schema() || :d))"),
                        {"ns": LOCK_NAMESPACE, "d": "/" + duty},
                    )
                    log.info("not elected to %s yet: %s", duty, exc.orig or exc)
                    return None
            except DBAPIError as exc:
                self._drop(f"the database connection failed ({exc.orig or exc})")
                return None
            self._terms[duty] = term
            log.info("elected leader of %s, term %d", duty, term)
            return term

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn, self.backend_pid = lock_connection(self.engine)
        return self._conn

    def _elect(self, duty: str) -> int:
        """One more term for ``duty``, held by this member (its own transaction)."""
        now = self.clock()
        insert = pg_insert(LeaderTerm).values(duty=duty, term=1, holder=self.member, elected_at=now)
        stmt = insert.on_conflict_do_update(
            index_elements=[LeaderTerm.duty],
            set_={"term": LeaderTerm.term + 1, "holder": self.member, "elected_at": now},
        ).returning(LeaderTerm.term)
        with Session(self.engine) as session, session.begin():
            # a round of the old holder that passed its fence holds the row until it ends:
            # do not wait here (other duties share this elector), try again next round
            session.execute(text(f"SET LOCAL lock_timeout = '{ELECTION_WAIT_MS}ms'"))
            term: int = session.execute(stmt).scalar_one()
        return term

    def _drop(self, why: str, level: int = logging.WARNING) -> None:
        """Lose every duty: close the lock connection (the server frees its locks)."""
        if self._terms:
            log.log(level, "no longer leader of %s: %s", ", ".join(sorted(self._terms)), why)
        self._terms.clear()
        conn, self._conn, self.backend_pid = self._conn, None, None
        close_lock_connection(conn)

    def fence(self, duty: str, term: int) -> Fence | None:
        idle = FENCED_IDLE_S.get(duty, max(FENCED_IDLE_S.values()))

        def check(session: Session) -> None:
            # first: from the moment the row is held, a paused holder's transaction ends
            session.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = '{idle}s'"))
            now = session.scalar(
                select(LeaderTerm.term).where(LeaderTerm.duty == duty).with_for_update(read=True)
            )
            if now != term:
                raise Fenced(duty, term, now)

        return check

    def lost(self, duty: str) -> None:
        with self._lock:
            self._drop(f"a write of {duty} was fenced")

    def terms(self) -> dict[str, int]:
        with self._lock:
            return dict(self._terms)

    def close(self) -> None:
        """Give every duty up at once (the lock connection is closed, not pooled)."""
        with self._lock:
            self._drop("stopping", logging.INFO)


def election_for(engine: Engine, member: str, clock: Callable[[], datetime]) -> Election:
    """PostgreSQL elects (:class:`PgElection`); SQLite leads everything here."""
    if engine.dialect.name == "postgresql":
        return PgElection(engine, member, clock)
    return LocalElection()


def fenced(
    election: Election,
    duty: str,
    round_: Callable[[Fence | None], int],
    standby: Callable[[], object] | None = None,
) -> Callable[[], int]:
    """A loop's round of a singleton ``duty``: ``standby`` (if any) unless this process leads
    it (a standby's preparation, to act at once when elected); else ``round_`` with the fence
    of its term (a fenced round gives the duty up, logged)."""

    def run_once() -> int:
        term = election.lead(duty)
        if term is None:
            if standby is not None:
                standby()
            return 0
        try:
            return round_(election.fence(duty, term))
        except Fenced as exc:
            log.warning("%s", exc)
            election.lost(duty)
            return 0

    return run_once


# --------------------------------------------------------------------------- wake-ups


def channel(schema: str) -> str:
    """The channel submissions into ``schema`` notify."""
    return CHANNEL_PREFIX + schema


def notify_pending(session: Session) -> None:
    """Wake the dispatchers when this transaction commits (PostgreSQL; SQLite: nothing)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:prefix || current_schema(), '')"),
            {"prefix": CHANNEL_PREFIX},
        )


@dataclass
class Wakeups:
    """Sets ``event`` at each notification of :func:`channel` (PostgreSQL), from a thread
    that listens on a connection of its own (reconnecting after a failure)."""

    engine: Engine
    event: threading.Event
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    #: set once listening (tests wait for it)
    listening: threading.Event = field(default_factory=threading.Event, init=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wakeups", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        from psycopg import Connection as PgConnection
        from psycopg import Error, sql

        while not self._stop.is_set():
            raw = None
            try:
                raw = self.engine.raw_connection()
                pg = raw.driver_connection
                raw.detach()  # held for good: not the pool's any more
                if not isinstance(pg, PgConnection):
                    raise TypeError(f"LISTEN needs psycopg 3, not {type(pg).__name__}")
                pg.autocommit = True
                schema = pg.execute("SELECT current_schema()").fetchone()
                name = channel(str(schema[0] if schema else "public"))
                pg.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                self.listening.set()
                log.info("listening for submissions on %s", name)
                while not self._stop.is_set():
                    for _ in pg.notifies(timeout=1.0):
                        self.event.set()
            except (Error, DBAPIError, TypeError) as exc:
                self.listening.clear()
                log.warning("listening for submissions failed (%s); polling until it works", exc)
                self._stop.wait(1.0)
            finally:
                if raw is not None:
                    raw.close()


# --------------------------------------------------------------------------- members


@dataclass
class Member:
    """This process in ``cluster_members``: :meth:`beat` records it (call it every
    :data:`HEARTBEAT_S`) and counts the live members of its kind, itself included
    (``peers``: heartbeats within :data:`STALE_AFTER_S`; the API replicas' rate limits are
    shared out by it), :meth:`leave` removes it."""

    sessions: sessionmaker[Session]
    kind: str
    clock: Callable[[], datetime]
    election: Election | None = None
    #: the centers this member's executors reach (a worker; None: a replica)
    serves: frozenset[str] | None = None
    #: the centers it holds now (None: all it serves)
    holds: Callable[[], frozenset[str] | None] = lambda: None
    id: str = field(default_factory=new_id)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime | None = None
    peers: int = 1

    def beat(self) -> int:
        now = self.clock()
        if self.started_at is None:
            self.started_at = now
        duties = self.election.terms() if self.election is not None else {}
        serves = None if self.serves is None else sorted(self.serves)
        held = self.holds()
        holds = serves if held is None else sorted(held)
        with self.sessions.begin() as session:
            row = session.get(ClusterMember, self.id)
            if row is None:
                session.add(
                    ClusterMember(
                        id=self.id, kind=self.kind, host=self.host[:255], pid=self.pid,
                        version=__version__[:40], started_at=self.started_at, heartbeat_at=now,
                        duties=duties, serves=serves, holds=holds,
                    )
                )  # fmt: skip
            else:
                row.heartbeat_at, row.duties, row.serves, row.holds = now, duties, serves, holds
            session.execute(
                delete(ClusterMember).where(ClusterMember.heartbeat_at < now - FORGET_AFTER)
            )
            live = session.scalar(
                select(func.count()).where(
                    ClusterMember.kind == self.kind,
                    ClusterMember.heartbeat_at >= now - timedelta(seconds=STALE_AFTER_S),
                )
            )
        self.peers = max(1, live or 0)
        return 0

    def leave(self) -> None:
        with self.sessions.begin() as session:
            session.execute(delete(ClusterMember).where(ClusterMember.id == self.id))
