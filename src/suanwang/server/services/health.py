"""Which centers answer: the reachability the dispatcher and failover act on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from suanwang.server.models.center_health import Reported, report_health, reported_health


@dataclass
class CenterHealth:
    """Since when each unreachable center has failed to answer its executor's calls.

    Every executor call that fails reports :meth:`failed`; every call that succeeds reports
    :meth:`ok`. A center that fails is not given new jobs; one unreachable for longer than the
    grace period has its jobs failed over (see :mod:`suanwang.server.services.failover`).
    In memory: a restarted service starts by trusting every center and learns again.

    With centers shared among workers (:mod:`suanwang.server.shares`), only a center's holder
    calls it: :meth:`share` (each cluster round) reports what this worker saw of the centers
    it holds and reads what the others reported of theirs, so :meth:`down` and
    :meth:`unreachable_s` answer for every center. A center taken over starts from its last
    report (a center down for a minute is not trusted afresh by its new holder).
    """

    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _down_since: dict[str, datetime] = field(default_factory=dict, init=False)
    _reason: dict[str, str] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    #: the other workers' last reports of the centers they hold (none: nothing is shared)
    _remote: dict[str, Reported] = field(default_factory=dict, init=False)
    _held: frozenset[str] | None = field(default=None, init=False)

    def ok(self, center: str) -> None:
        with self._lock:
            self._down_since.pop(center, None)
            self._reason.pop(center, None)

    def failed(self, center: str, reason: str) -> None:
        with self._lock:
            self._down_since.setdefault(center, self.clock())
            self._reason[center] = reason

    def unreachable_s(self, center: str) -> float:
        """Seconds the center has been unreachable (0: it answers)."""
        with self._lock:
            since = self._down_since.get(center)
            remote = self._remote.get(center)
        if remote is not None and remote.down_since is not None:
            since = remote.down_since if since is None else min(since, remote.down_since)
        return 0.0 if since is None else max(0.0, (self.clock() - since).total_seconds())

    def down(self) -> dict[str, str]:
        """Centers not answering now, with the last error."""
        with self._lock:
            out = {c: r.reason for c, r in self._remote.items() if r.down_since is not None}
            out.update(self._reason)
            return out

    def share(
        self, sessions: sessionmaker[Session], member: str, held: frozenset[str] | None
    ) -> None:
        """Report the reachability of the centers ``held`` here (as ``member``) and read the
        others' reports (``held`` None: nothing is shared, every center is called here)."""
        if held is None:
            return
        now = self.clock()
        with sessions.begin() as session:
            reports = reported_health(session=session)
            with self._lock:
                for c in held - (self._held or frozenset()):  # taken over: from its last report
                    r = reports.get(c)
                    if r is not None and r.down_since is not None and c not in self._down_since:
                        self._down_since[c], self._reason[c] = r.down_since, r.reason
                for c in list(self._down_since):  # another worker's now: its report counts
                    if c not in held:
                        self._down_since.pop(c, None)
                        self._reason.pop(c, None)
                self._remote = {c: r for c, r in reports.items() if c not in held}
                self._held = held
                down = {c: (self._down_since[c], self._reason[c]) for c in self._down_since}
            report_health(session=session, down=down, answering=held - set(down),
                          member=member, now=now)  # fmt: skip
