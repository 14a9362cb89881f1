"""The time the server tests live in: the API's clock (``conftest.app``) stands at :data:`NOW`
(:func:`stepping`), and what tests write themselves is stamped relative to it, so they pass
whatever the hour and the day the suite runs (``faketime`` checks it).

Imported as ``pinned`` (pytest puts this directory on ``sys.path``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

#: The API's clock in tests: signals are those of 2025-07-01 06:00 UTC.
NOW = datetime(2025, 7, 1, 6, 30, tzinfo=UTC)
#: The month of :data:`NOW` (``YYYY-MM``): where the API's ledger entries are invoiced.
PERIOD = NOW.strftime("%Y-%m")


def ticking(start: datetime = NOW) -> Callable[[], datetime]:
    """A clock that reads ``start`` when made and then advances with the time that really
    passes (for services that run real processes: a run that sleeps 1 s lasts 1 s)."""
    t0 = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - t0)


def stepping(start: datetime = NOW) -> Callable[[], datetime]:
    """A clock that reads ``start``, then one microsecond more at every reading: it stands
    still for every purpose but order (jobs submitted one after another are stamped in that
    order, as the queue and paging expect), however long the tests take."""
    readings = itertools.count()
    return lambda: start + timedelta(microseconds=next(readings))
