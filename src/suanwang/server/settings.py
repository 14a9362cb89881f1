"""Server settings: where the database is and which scenario the platform serves."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_DB_URL = "sqlite:///suanwang.db"
DEFAULT_SCENARIO = "china"
#: Largest accepted request body (bytes); bigger bodies get a 413.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
#: Requests the app works on at once (per server process); more wait in line, in arrival order.
#: Each holds at most one database connection, so the pool is this large and never runs dry.
DEFAULT_MAX_IN_FLIGHT = 16
#: Rate limits (docs/control-plane.md, "Rate limits"): failed authentications per client
#: address, job submissions per tenant; a burst (0: no limit) and a sustained rate per second.
DEFAULT_AUTH_FAILURE_BURST = 1000
DEFAULT_AUTH_FAILURE_RATE = 10.0
DEFAULT_SUBMIT_BURST = 5000
DEFAULT_SUBMIT_RATE = 1000.0
#: Runs of a job an answering center's executor may report lost before the job fails
#: (docs/centers.md, "A run lost at an answering center").
DEFAULT_MAX_LOST_RUNS = 3
#: Seconds a job whose run was lost so waits before it goes back to a center it lost runs at
#: (doubled for each further loss, up to :data:`LOST_RUN_BACKOFF_CAP_S`; 0: no wait).
DEFAULT_LOST_RUN_BACKOFF_S = 30.0
#: The longest such wait (seconds), unless the base back-off itself is longer.
LOST_RUN_BACKOFF_CAP_S = 600.0
#: Seconds a placing round with quotas runs, writes included, before it leaves the rest of the
#: queue to the next round (at once): the round holds its jobs' rows (SQLite: the database's
#: write lock) about this long. 0.9 keeps every round under a second at 100,000 pending jobs
#: (docs/benchmarks.md, "The live dispatcher at scale", ninth pass).
DEFAULT_ROUND_BUDGET_S = 0.9


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to start.

    ``scenario`` is a built-in scenario name (``china``) or a scenario directory, as for
    :func:`suanwang.scenarios.loader.load_scenario`. ``signals_seed`` seeds the modelled
    price/green/carbon signals shown by ``/v1/centers``. ``max_in_flight`` bounds the requests
    one server process works on at once (and sizes its database pool to match).
    ``allow_job_network``: jobs may ask for network (``network: true``; else a 422 naming
    the field); the local executors' sandboxes must allow it too. The rate
    limits (:mod:`suanwang.server.ratelimit`): ``auth_failure_burst`` wrong keys per client
    address, refilled at ``auth_failure_rate_per_s``; ``submit_burst`` job submissions per
    tenant, refilled at ``submit_rate_per_s`` (a burst of 0 turns a limit off).
    ``max_lost_runs``: a job whose runs an executor reported lost this many times while its
    center answered fails, naming the centers and what their executors said (losses to a
    failover do not count; docs/centers.md). ``lost_run_backoff_s``: after such a loss the job
    goes back to a center it lost runs at (none other can run it) only once this many seconds
    have passed since the loss, doubled for each further loss, at most
    :data:`LOST_RUN_BACKOFF_CAP_S` (0: at once). ``round_budget_s``: a placing round with
    quotas takes no more jobs once it has run this long, writes included (0: no limit; the
    dispatcher's ``round_budget_s``).
    """

    db_url: str = DEFAULT_DB_URL
    scenario: str = DEFAULT_SCENARIO
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    signals_seed: int = 0
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    allow_job_network: bool = False
    auth_failure_burst: int = DEFAULT_AUTH_FAILURE_BURST
    auth_failure_rate_per_s: float = DEFAULT_AUTH_FAILURE_RATE
    submit_burst: int = DEFAULT_SUBMIT_BURST
    submit_rate_per_s: float = DEFAULT_SUBMIT_RATE
    #: record this API replica in the cluster's members, with a heartbeat (``/v1/cluster``)
    heartbeat: bool = False
    max_lost_runs: int = DEFAULT_MAX_LOST_RUNS
    lost_run_backoff_s: float = DEFAULT_LOST_RUN_BACKOFF_S
    round_budget_s: float = DEFAULT_ROUND_BUDGET_S

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {self.max_in_flight}")
        if self.max_lost_runs < 1:
            raise ValueError(f"max_lost_runs must be at least 1, not {self.max_lost_runs}")
        backoff = self.lost_run_backoff_s
        if not (0 <= backoff < float("inf")):  # (NaN too)
            raise ValueError(
                "lost_run_backoff_s (--lost-run-backoff-s, SUANWANG_LOST_RUN_BACKOFF_S) must "
                f"be a number of seconds >= 0 (0: no back-off), not {backoff}"
            )
        if not (0 <= self.round_budget_s < float("inf")):  # (NaN too)
            raise ValueError(
                "round_budget_s (SUANWANG_ROUND_BUDGET_S) must be a number of seconds >= 0 "
                f"(0: no limit), not {self.round_budget_s}"
            )
        for name in ("auth_failure", "submit"):
            burst, rate = getattr(self, f"{name}_burst"), getattr(self, f"{name}_rate_per_s")
            if burst < 0 or not rate > 0:
                raise ValueError(f"{name}_burst must be >= 0 and {name}_rate_per_s > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``SUANWANG_DB``, ``SUANWANG_SCENARIO``, ``SUANWANG_MAX_IN_FLIGHT``,
        ``SUANWANG_ALLOW_JOB_NETWORK`` (``1``: allowed), ``SUANWANG_HEARTBEAT`` (``1``: record
        this replica in the cluster's members), the rate limits
        ``SUANWANG_AUTH_FAILURE_BURST``, ``SUANWANG_AUTH_FAILURE_RATE``,
        ``SUANWANG_SUBMIT_BURST``, ``SUANWANG_SUBMIT_RATE``, and
        ``SUANWANG_MAX_LOST_RUNS``, ``SUANWANG_LOST_RUN_BACKOFF_S``,
        ``SUANWANG_ROUND_BUDGET_S``."""
        env = os.environ if environ is None else environ

        def number(name: str, default: float, kind: type[int] | type[float]) -> Any:
            text = env.get(name, "").strip()
            if not text:
                return default
            try:
                return kind(text)
            except ValueError:
                raise ValueError(
                    f"{name}: {text!r} is not a{'n integer' if kind is int else ' number'}"
                ) from None

        return cls(
            db_url=env.get("SUANWANG_DB", DEFAULT_DB_URL),
            scenario=env.get("SUANWANG_SCENARIO", DEFAULT_SCENARIO),
            max_in_flight=number("SUANWANG_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT, int),
            auth_failure_burst=number(
                "SUANWANG_AUTH_FAILURE_BURST", DEFAULT_AUTH_FAILURE_BURST, int
            ),
            auth_failure_rate_per_s=number(
                "SUANWANG_AUTH_FAILURE_RATE", DEFAULT_AUTH_FAILURE_RATE, float
            ),
            submit_burst=number("SUANWANG_SUBMIT_BURST", DEFAULT_SUBMIT_BURST, int),
            submit_rate_per_s=number("SUANWANG_SUBMIT_RATE", DEFAULT_SUBMIT_RATE, float),
            allow_job_network=env.get("SUANWANG_ALLOW_JOB_NETWORK", "") == "1",
            heartbeat=env.get("SUANWANG_HEARTBEAT", "") == "1",
            max_lost_runs=number("SUANWANG_MAX_LOST_RUNS", DEFAULT_MAX_LOST_RUNS, int),
            lost_run_backoff_s=number(
                "SUANWANG_LOST_RUN_BACKOFF_S", DEFAULT_LOST_RUN_BACKOFF_S, float
            ),
            round_budget_s=number("SUANWANG_ROUND_BUDGET_S", DEFAULT_ROUND_BUDGET_S, float),
        )
