"""Server settings: where the database is and which scenario the platform serves."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DB_URL = "sqlite:///suanwang.db"
DEFAULT_SCENARIO = "china"
#: Largest accepted request body (bytes); bigger bodies get a 413.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
#: Requests the app works on at once (per server process); more wait in line, in arrival order.
#: Each holds at most one database connection, so the pool is this large and never runs dry.
DEFAULT_MAX_IN_FLIGHT = 16


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to start.

    ``scenario`` is a built-in scenario name (``china``) or a scenario directory, as for
    :func:`suanwang.scenarios.loader.load_scenario`. ``signals_seed`` seeds the modelled
    price/green/carbon signals shown by ``/v1/centers``. ``max_in_flight`` bounds the requests
    one server process works on at once (and sizes its database pool to match).
    ``allow_job_network``: jobs may ask for network (``network: true``; else a 422 naming
    the field); the local executors' sandboxes must allow it too.
    """

    db_url: str = DEFAULT_DB_URL
    scenario: str = DEFAULT_SCENARIO
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    signals_seed: int = 0
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    allow_job_network: bool = False

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {self.max_in_flight}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``SUANWANG_DB``, ``SUANWANG_SCENARIO``, ``SUANWANG_MAX_IN_FLIGHT`` and
        ``SUANWANG_ALLOW_JOB_NETWORK`` (``1``: allowed)."""
        env = os.environ if environ is None else environ
        in_flight = env.get("SUANWANG_MAX_IN_FLIGHT", "")
        return cls(
            db_url=env.get("SUANWANG_DB", DEFAULT_DB_URL),
            scenario=env.get("SUANWANG_SCENARIO", DEFAULT_SCENARIO),
            max_in_flight=int(in_flight) if in_flight.strip() else DEFAULT_MAX_IN_FLIGHT,
            allow_job_network=env.get("SUANWANG_ALLOW_JOB_NETWORK", "") == "1",
        )
