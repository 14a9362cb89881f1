"""Rate limits: token buckets, kept in the server process.

Two limits, both on by default with generous sizes (:class:`~suanwang.server.settings.
Settings`; docs/control-plane.md, "Rate limits"):

* **failed authentication, per client address**: each request with a wrong key takes a token;
  when the address has none left, every request from it whose key is not already known good
  gets ``429 Too Many Requests`` with ``Retry-After`` (seconds) until one has refilled. Keys
  that authenticated recently (the app's key cache) are not slowed down by someone guessing
  from the same address.
* **job submissions, per tenant**: each ``POST /v1/jobs`` (a replay too) takes a token.

A bucket holds at most ``burst`` tokens and refills at ``rate_per_s``; ``burst = 0`` turns the
limit off. Each server process limits on its own (two workers let through twice as much)
until the limits move to the database or a shared store (issue 16).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


class TokenBuckets:
    """One token bucket per key (an address, a tenant), all of the same size and rate.

    ``clock`` gives seconds on a monotonic clock (``time.monotonic`` by default; tests pin
    it). At most ``max_keys`` buckets are kept: beyond, the full ones (nothing to remember)
    are forgotten, and if that is not enough, all."""

    def __init__(
        self,
        burst: int,
        rate_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if burst < 0 or not rate_per_s > 0:
            raise ValueError(f"a bucket needs burst >= 0 and rate > 0 (got {burst}, {rate_per_s})")
        self.burst = burst
        self.rate_per_s = rate_per_s
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.burst > 0

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - at) * self.rate_per_s)

    def wait(self, key: str) -> int | None:
        """Seconds (whole, at least 1) until ``key`` has a token, or None if it has one now."""
        if not self.enabled:
            return None
        level = self._level(key, self.clock())
        if level >= 1:
            return None
        return max(1, math.ceil((1 - level) / self.rate_per_s))

    def take(self, key: str) -> int | None:
        """Take a token for ``key``: None if there was one, else the seconds to wait (nothing
        is taken then)."""
        if not self.enabled:
            return None
        now = self.clock()
        level = self._level(key, now)
        if level < 1:
            return max(1, math.ceil((1 - level) / self.rate_per_s))
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._forget_full(now)
        self._buckets[key] = (level - 1, now)
        return None

    def _forget_full(self, now: float) -> None:
        full = [k for k in self._buckets if self._level(k, now) >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


@dataclass(frozen=True)
class RateLimits:
    """The app's limits (``app.state.limits``)."""

    auth_failures: TokenBuckets
    submissions: TokenBuckets
