"""Which centers answer: the reachability the dispatcher and failover act on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass
class CenterHealth:
    """Since when each unreachable center has failed to answer its executor's calls.

    Every executor call that fails reports :meth:`failed`; every call that succeeds reports
    :meth:`ok`. A center that fails is not given new jobs; one unreachable for longer than the
    grace period has its jobs failed over (see :mod:`suanwang.server.services.failover`).
    In memory: a restarted service starts by trusting every center and learns again.
    """

    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _down_since: dict[str, datetime] = field(default_factory=dict, init=False)
    _reason: dict[str, str] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

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
        return 0.0 if since is None else max(0.0, (self.clock() - since).total_seconds())

    def down(self) -> dict[str, str]:
        """Centers not answering now, with the last error."""
        with self._lock:
            return dict(self._reason)
