"""Calls to many centers at once, none waiting on another (docs/centers.md, "Leases").

A service that calls every center in a round (the reconciler's polls, the dispatcher's
hand-over, failover's probes and fences, the migrations' checkpoint requests and stops)
makes each center's calls in a worker thread of its own and waits for all of them together,
for each center while each of its calls answers within :attr:`CenterCalls.answer_within_s`:
a center whose calls hang (its ``slurmrestd`` stopped, its network gone) is reported as not
answering this round, while the others' answers are used at once. Its call goes on in the
background until it answers or its own timeout ends it; meanwhile the center gets no other
call from the same service (a hung center holds one worker, never more), and the answer that
came late is handed to the next round that asks that center (:meth:`CenterCalls.answers`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from suanwang.executors.base import ExecutorError

T = TypeVar("T")

#: Seconds a round waits for a center's call to answer (a healthy ``slurmrestd`` answers in
#: tens of milliseconds); a lease must outlast a round, so it is far below any lease in use.
ANSWER_WITHIN_S = 1.0
#: Worker threads at most (one per center that is being called).
MAX_WORKERS = 64


@dataclass(frozen=True)
class Late(Generic[T]):
    """The answer of a call an earlier round stopped waiting for."""

    value: T


class NoAnswer(ExecutorError):
    """A center's call did not answer within the round's wait, or is still going on."""


@dataclass
class CenterCalls(Generic[T]):
    """Runs one call per center concurrently (see the module docstring). Thread-safe."""

    name: str
    answer_within_s: float = ANSWER_WITHIN_S
    max_workers: int = MAX_WORKERS
    #: the clock the age of an outstanding call is told on (seconds)
    timer: Callable[[], float] = time.monotonic
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _outstanding: dict[str, tuple[float, Future[T]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def answers(
        self,
        work: Mapping[str, Callable[[], T]],
        progress: Callable[[str], float | None] = lambda center: None,
    ) -> dict[str, T | Late[T] | ExecutorError]:
        """Call ``work[center]()`` for every center at once; wait for each while it answers
        within ``answer_within_s``: since it started or, for work made of several calls,
        since ``progress(center)`` (the ``timer`` value when its last call answered).

        Each center's entry is its call's value, the :class:`ExecutorError` it raised, or a
        :class:`NoAnswer` (it did not answer in time, or an earlier call to it is still
        going on: then it is not called again). A center whose earlier call has answered
        since a round stopped waiting for it is not called: its entry is that answer,
        :class:`Late` (or the error it raised). Any other exception a call raises is raised
        here.
        """
        out: dict[str, T | Late[T] | ExecutorError] = {}
        started: dict[str, Future[T]] = {}
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=self.name)
            for center, call in work.items():
                earlier = self._outstanding.get(center)
                if earlier is not None:
                    since, future = earlier
                    if not future.done():
                        out[center] = NoAnswer(
                            center,
                            f"still waiting for the answer to a call made "
                            f"{self.timer() - since:.0f} s ago (unreachable)",
                        )
                        continue
                    del self._outstanding[center]
                    error = future.exception()
                    if error is None:
                        out[center] = Late(future.result())
                    elif isinstance(error, ExecutorError):
                        out[center] = error
                    else:
                        raise error
                    continue
                future = self._pool.submit(call)
                started[center] = future
                self._outstanding[center] = (self.timer(), future)
        self._wait(started, progress)
        with self._lock:
            for center, future in started.items():
                if not future.done():
                    out[center] = NoAnswer(
                        center, f"no answer within {self.answer_within_s:g} s (unreachable)"
                    )
                    continue
                del self._outstanding[center]
                error = future.exception()
                if error is None:
                    out[center] = future.result()
                elif isinstance(error, ExecutorError):
                    out[center] = error
                else:
                    raise error
        return out

    def _wait(
        self, started: Mapping[str, Future[T]], progress: Callable[[str], float | None]
    ) -> None:
        """Until every call is done or has made no progress for ``answer_within_s``."""
        t0 = self.timer()
        waiting = dict(started)
        while waiting:
            now = self.timer()
            until = {c: max(t0, progress(c) or t0) + self.answer_within_s for c in waiting}
            waiting = {c: f for c, f in waiting.items() if not f.done() and until[c] > now}
            if waiting:
                wait(waiting.values(), min(until[c] for c in waiting) - now, FIRST_COMPLETED)

    def busy(self) -> list[str]:
        """Centers with a call still going on."""
        with self._lock:
            return [c for c, (_, f) in self._outstanding.items() if not f.done()]

    def close(self) -> None:
        """Stop taking calls (those going on end by their own timeouts)."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
