"""Live signals: the modelled price, green share and carbon from the current hour on."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from suanwang.core.scenario import Scenario
from suanwang.core.signals import Signals
from suanwang.scenarios.signals import build_signals

SIGNAL_HOURS = 48


class SignalCache:
    """The modelled signals from the current UTC hour on, rebuilt when the hour changes."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int = 0,
        hours: int = SIGNAL_HOURS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.hours = hours
        self.clock = clock
        self._lock = threading.Lock()
        self._hour: datetime | None = None
        self._signals: Signals | None = None

    def current(self) -> Signals:
        hour = self.clock().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        with self._lock:  # one build per hour, however many requests arrive meanwhile
            if self._signals is None or self._hour != hour:
                self._signals = build_signals(self.scenario, hour, self.hours, seed=self.seed)
                self._hour = hour
            return self._signals
