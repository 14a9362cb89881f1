"""A standby placer prepares, writing nothing, so that when elected its first round does no
one-time work (:mod:`suanwang.server.services.standby`); the decisions are the same."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

from pinned import NOW
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from suanwang.core.network import Network
from suanwang.executors.local import LocalExecutor, SharedUser
from suanwang.scenarios.loader import load_scenario
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.server.database.models import JobEvent, TenantRole
from suanwang.server.database.session import make_engine, migrate, session_factory
from suanwang.server.models.tenants import create_tenant
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.standby import Standby
from suanwang.server.signals import SignalCache

TINY = str(Path(__file__).parents[1] / "fixtures" / "scenarios" / "tiny")

#: In a fresh interpreter: three jobs pending, then (unless told not to) the standby's
#: preparation, then the first placing round; prints what the engine's compiled functions had
#: loaded at each step, the events the preparation wrote and every job's decision.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime, timedelta
    from pathlib import Path

    from numba.core.registry import CPUDispatcher
    from sqlalchemy import func, select

    from suanwang.core.network import Network
    from suanwang.executors.local import LocalExecutor, SharedUser
    from suanwang.scenarios.loader import load_scenario
    from suanwang.scheduling import lookahead, objective, room
    from suanwang.scheduling.planner import SuanwangPolicy
    from suanwang.server.database.models import JobEvent, JobRow, TenantRole
    from suanwang.server.database.session import make_engine, migrate, session_factory
    from suanwang.server.models.jobs import submit_job
    from suanwang.server.models.tenants import create_tenant
    from suanwang.server.schemas import JobSpec
    from suanwang.server.services.dispatcher import Dispatcher
    from suanwang.server.services.live import LiveNetwork
    from suanwang.server.services.standby import Standby
    from suanwang.server.signals import SignalCache

    url, root, tiny, at, prepare = sys.argv[1:6]
    now = datetime.fromisoformat(at)
    clock = lambda: now
    migrate(url)
    sessions = session_factory(make_engine(url))
    scenario = load_scenario(tiny)
    net = Network(scenario)
    jobs = {
        "gpu": {"resources": {"accelerator": "h100", "cards": 1}, "duration_s": 600},
        "cpu": {"resources": {"cpus": 4}, "duration_s": 3600, "kind": "analytics"},
        "batch": {"resources": {"cpus": 2}, "duration_s": 7200, "kind": "render"},
    }
    with sessions.begin() as s:
        tenant, _ = create_tenant(session=s, name="t", role=TenantRole.CONSUMER, now=now)
        for i, (name, spec) in enumerate(jobs.items()):  # a second apart: one order
            spec = JobSpec.model_validate(
                {"name": name, "command": "true", "origin": "harbour", **spec})
            submit_job(session=s, tenant=tenant, spec=spec, now=now - timedelta(seconds=3 - i))
    executors = {c: LocalExecutor(Path(root), c, cpus=64, cards=4, sandbox=SharedUser())
                 for c in net.center_ids}
    live = LiveNetwork(net=net, signals=SignalCache(scenario, clock=clock).current,
                       executors=executors, clock=clock)
    compiled = [f for m in (lookahead, objective, room) for f in vars(m).values()
                if isinstance(f, CPUDispatcher)]

    def loaded():
        return {f.__name__: len(f.signatures) for f in compiled}

    def events():
        with sessions() as s:
            return s.scalar(select(func.count()).select_from(JobEvent))

    out = {"fresh": loaded()}
    policy = SuanwangPolicy()
    if prepare == "prepare":
        before = events()
        standby = Standby(sessions, live, policy)
        out["prepared"] = [standby(), standby()]
        out["written"] = events() - before
        out["after_standby"] = loaded()
    out["decided"] = Dispatcher(sessions, live, policy=policy).place()
    out["after_round"] = loaded()
    with sessions() as s:
        out["decisions"] = {
            r.name: [r.state, r.center_id, r.pool_model, str(r.start_at), r.decision]
            for r in s.scalars(select(JobRow))
        }
    print(json.dumps(out))
    """
)


def _run(tmp: Path, prepare: bool) -> dict[str, Any]:
    url = f"sqlite:///{tmp / 'db.sqlite'}"
    args = [url, str(tmp / "centers"), TINY, NOW.isoformat(), "prepare" if prepare else "no"]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_a_prepared_standby_places_without_loading_anything_and_as_it_would_have(
    tmp_path: Path,
) -> None:
    """In a fresh process the engine's compiled functions are not loaded; the standby's
    preparation loads every one the first round needs (the round loads none more), writes no
    event, is not repeated within the hour, and the round decides exactly what a round without
    it decides."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    prepared, cold = _run(tmp_path / "a", True), _run(tmp_path / "b", False)
    assert not any(prepared["fresh"].values())  # nothing loaded before
    assert prepared["prepared"] == [True, False]  # once within the hour
    assert prepared["written"] == 0
    used = {f for f, n in cold["after_round"].items() if n}
    assert used, "the first round loads compiled functions"  # or this test shows nothing
    assert {f for f, n in prepared["after_standby"].items() if n} >= used
    assert prepared["after_round"] == prepared["after_standby"]  # the round loaded none
    assert prepared["decided"] == cold["decided"] == 3
    assert prepared["decisions"] == cold["decisions"]
    assert {d[0] for d in cold["decisions"].values()} == {"scheduled"}


def test_the_standby_prepares_again_when_the_hour_of_the_signals_turns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    engine = make_engine(url)
    sessions: sessionmaker[Session] = session_factory(engine)
    with sessions.begin() as s:
        create_tenant(session=s, name="t", role=TenantRole.CONSUMER, now=NOW)
    now = [NOW]
    scenario = load_scenario(TINY)
    net = Network(scenario)
    executor = LocalExecutor(tmp_path / "c", "coast-hpc", cpus=8, cards=4, sandbox=SharedUser())
    live = LiveNetwork(
        net=net,
        signals=SignalCache(scenario, clock=lambda: now[0]).current,
        executors={"coast-hpc": executor},
        clock=lambda: now[0],
    )
    standby = Standby(sessions, live, SuanwangPolicy())
    assert standby() and not standby()
    now[0] = NOW + timedelta(minutes=20)  # the same hour
    assert not standby()
    now[0] = NOW + timedelta(hours=1)
    assert standby()
    assert standby.ready_for == live.signals().start
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(JobEvent)) == 0
    engine.dispose()
