"""Run a service's ``run_once`` over and over in a background thread until stopped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("suanwang.services")


@dataclass
class LoopService:
    """Calls ``run_once`` every ``interval_s`` (at once again when it did work), or sooner
    when ``wakeup`` is set (e.g. by :class:`~suanwang.server.cluster.Wakeups`: a submission).
    ``min_round_s``: rounds start at least that far apart, so that work arriving in a trickle
    (a submission at a time, each waking the loop) is taken in batches.

    An exception is logged and the loop goes on: a round is idempotent, so the next one repeats
    whatever the failed one left undone.
    """

    name: str
    run_once: Callable[[], int]
    interval_s: float = 1.0
    wakeup: threading.Event | None = None
    min_round_s: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    rounds: int = field(default=0, init=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self.wakeup is not None:
            self.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            did = 0
            if self.wakeup is not None:
                self.wakeup.clear()  # what sets it during the round brings the next one sooner
            try:
                did = self.run_once()
            except Exception:
                log.exception("%s round failed", self.name)
            self.rounds += 1
            if not did:
                (self.wakeup or self._stop).wait(self.interval_s)
            pause = self.min_round_s - (time.monotonic() - started)
            if pause > 0:
                self._stop.wait(pause)
