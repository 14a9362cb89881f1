"""Rate limits: token buckets, kept in each API replica, each with its share of the limit.

Two limits, both on by default with generous sizes (:class:`~suanwang.server.settings.
Settings`; docs/control-plane.md, "Rate limits"):

* **failed authentication, per client address**: each request with a wrong key takes a token;
  when the address has none left, every request from it whose key is not already known good
  gets ``429 Too Many Requests`` with ``Retry-After`` (seconds) until one has refilled. Keys
  that authenticated recently (the app's key cache) are not slowed down by someone guessing
  from the same address.
* **job submissions, per tenant**: each ``POST /v1/jobs`` (a replay too) takes a token.

A bucket holds at most ``burst`` tokens and refills at ``rate_per_s``; ``burst = 0`` turns the
limit off. The limits hold for the whole control plane: with ``n`` API replicas (``--workers``,
or replicas on several hosts: the live ``api`` members of the cluster, counted at each
heartbeat, :class:`suanwang.server.cluster.Member`) each keeps buckets of ``burst / n`` tokens
refilled at ``rate_per_s / n`` (at least one token: a burst smaller than ``n`` lets through up
to ``n``). Behind a load balancer that spreads a client's requests, it gets the configured
limit in all; one that keeps to one replica gets that replica's share, never more. No request
waits for the database for this (a shared bucket there would cost a write per submission and
per wrong key, the very requests a flood is made of).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


class TokenBuckets:
    """One token bucket per key (an address, a tenant), all of the same size and rate.

    ``clock`` gives seconds on a monotonic clock (``time.monotonic`` by default; tests pin
    it). ``replicas`` gives the number of API replicas that share the limit (this one's share
    is ``1 / replicas()``). At most ``max_keys`` buckets are kept: beyond, the full ones
    (nothing to remember) are forgotten, and if that is not enough, all."""

    def __init__(
        self,
        burst: int,
        rate_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        replicas: Callable[[], int] = lambda: 1,
        max_keys: int = 100_000,
    ) -> None:
        if burst < 0 or not rate_per_s > 0:
            raise ValueError(f"a bucket needs burst >= 0 and rate > 0 (got {burst}, {rate_per_s})")
        self.burst = burst
        self.rate_per_s = rate_per_s
        self.clock = clock
        self.replicas = replicas
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.burst > 0

    def share(self) -> tuple[float, float]:
        """This replica's bucket size and refill rate: its share of the limit."""
        n = max(1, self.replicas())
        return max(1.0, self.burst / n), self.rate_per_s / n

    def _level(self, key: str, now: float, size: float, rate: float) -> float:
        tokens, at = self._buckets.get(key, (size, now))
        return min(size, tokens + max(0.0, now - at) * rate)

    def wait(self, key: str) -> int | None:
        """Seconds (whole, at least 1) until ``key`` has a token, or None if it has one now."""
        if not self.enabled:
            return None
        size, rate = self.share()
        level = self._level(key, self.clock(), size, rate)
        if level >= 1:
            return None
        return max(1, math.ceil((1 - level) / rate))

    def take(self, key: str) -> int | None:
        """Take a token for ``key``: None if there was one, else the seconds to wait (nothing
        is taken then)."""
        if not self.enabled:
            return None
        now = self.clock()
        size, rate = self.share()
        level = self._level(key, now, size, rate)
        if level < 1:
            return max(1, math.ceil((1 - level) / rate))
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._forget_full(now, size, rate)
        self._buckets[key] = (level - 1, now)
        return None

    def _forget_full(self, now: float, size: float, rate: float) -> None:
        full = [k for k in self._buckets if self._level(k, now, size, rate) >= size]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


@dataclass(frozen=True)
class RateLimits:
    """The app's limits (``app.state.limits``)."""

    auth_failures: TokenBuckets
    submissions: TokenBuckets
