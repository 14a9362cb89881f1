"""Server settings: where the database is and which scenario the platform serves."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DB_URL = "sqlite:///suanwang.db"
DEFAULT_SCENARIO = "china"
#: Largest accepted request body (bytes); bigger bodies get a 413.
DEFAULT_MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to start.

    ``scenario`` is a built-in scenario name (``china``) or a scenario directory, as for
    :func:`suanwang.scenarios.loader.load_scenario`. ``signals_seed`` seeds the modelled
    price/green/carbon signals shown by ``/v1/centers``.
    """

    db_url: str = DEFAULT_DB_URL
    scenario: str = DEFAULT_SCENARIO
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    signals_seed: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``SUANWANG_DB_URL`` and ``SUANWANG_SCENARIO`` (defaults otherwise)."""
        env = os.environ if environ is None else environ
        return cls(
            db_url=env.get("SUANWANG_DB_URL", DEFAULT_DB_URL),
            scenario=env.get("SUANWANG_SCENARIO", DEFAULT_SCENARIO),
        )
