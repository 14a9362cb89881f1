"""The scenario as the executors really are: the engine never places at a center more than
its executor can run at once (a ``local`` executor of the platform file keeps the scenario's
figures only up to its slots)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.network import Network
from suanwang.executors.base import Executor
from suanwang.executors.local import LocalExecutor
from suanwang.scenarios.loader import load_scenario
from suanwang.server.database.models import JobRow
from suanwang.server.runner import live_scenario
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork


def test_a_small_local_executor_sizes_its_center(tmp_path: Path) -> None:
    scenario = load_scenario("china")
    small = LocalExecutor(tmp_path, "zhongwei", cpus=16, cards=10)
    big = LocalExecutor(tmp_path, "guian", cpus=100_000, cards=100_000)
    live = {c.id: c for c in live_scenario(scenario, {"zhongwei": small, "guian": big}).centers}
    assert live["zhongwei"].cpu_cores == 16
    assert dict(live["zhongwei"].inventory) == {"a100": 2, "ascend-910b": 4, "h20": 1, "h800": 3}
    assert live["guian"] == scenario.center("guian")  # room enough: the scenario's figures
    assert live["horinger"] == scenario.center("horinger")  # no executor: as it was


def test_the_engine_places_no_more_than_a_small_center_runs(
    app: FastAPI,
    sessions: sessionmaker[Session],
    alice: Any,
    submit: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    """Forty one-core jobs and one center whose executor runs 16 at once: 16 are handed to it,
    the others wait in the platform (planned to start as those end), not in the center's
    queue."""
    executors: dict[str, Executor] = {
        "zhongwei": LocalExecutor(tmp_path, "zhongwei", cpus=16, cards=0)
    }
    live = LiveNetwork(
        net=Network(live_scenario(load_scenario("china"), executors)),
        signals=app.state.signals.current,
        executors=executors,
        clock=app.state.signals.clock,
    )
    for i in range(40):
        submit(alice, name=f"cpu-{i}", command="sleep 30", duration_s=60, origin="zhongwei",
               resources={"cpus": 1, "cards": 0})  # fmt: skip
    try:
        Dispatcher(sessions, live, batch=100).run_once()
        with sessions() as s:
            handed = s.scalar(select(func.count()).where(JobRow.executor_ref.is_not(None)))
            states = dict(
                s.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
            )
        assert handed == 16
        assert states.get("pending", 0) + states.get("scheduled", 0) == 40, states
        assert executors["zhongwei"].capacity().used_cpus <= 16
    finally:
        with sessions() as s:
            refs = s.scalars(select(JobRow.executor_ref).where(JobRow.executor_ref.is_not(None)))
            for ref in refs:
                executors["zhongwei"].cancel(ref)
