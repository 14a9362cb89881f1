"""Assemble and run the platform: API server + dispatcher + reconciler + executors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from suanwang.core.network import Network
from suanwang.executors.base import Executor
from suanwang.executors.local import LocalExecutor
from suanwang.scenarios.loader import load_scenario
from suanwang.server.database.session import make_engine, migrate, session_factory
from suanwang.server.services.dispatcher import Dispatcher
from suanwang.server.services.live import LiveNetwork
from suanwang.server.services.loop import LoopService
from suanwang.server.services.reconciler import Reconciler
from suanwang.server.settings import Settings
from suanwang.server.signals import SignalCache

log = logging.getLogger("suanwang.serve")

#: Slots each local "center" offers on this machine: real processes, no real accelerators.
LOCAL_CARDS = 64
LOCAL_CPUS = 256


def local_executors(
    net: Network, root: Path, centers: list[str] | None = None
) -> dict[str, Executor]:
    """A local executor standing in for each center (or the named ones)."""
    chosen = centers if centers else list(net.center_ids)
    unknown = sorted(set(chosen) - set(net.center_ids))
    if unknown:
        raise ValueError(f"unknown center(s): {', '.join(unknown)}")
    return {c: LocalExecutor(root, c, cpus=LOCAL_CPUS, cards=LOCAL_CARDS) for c in chosen}


@dataclass
class Services:
    dispatcher: LoopService
    reconciler: LoopService

    def start(self) -> None:
        self.dispatcher.start()
        self.reconciler.start()

    def stop(self) -> None:
        self.dispatcher.stop()
        self.reconciler.stop()


def build_services(
    settings: Settings, executors_root: Path, centers: list[str] | None = None
) -> Services:
    """Migrate the database and wire the background services with local executors."""
    migrate(settings.db_url)
    scenario = load_scenario(settings.scenario)
    net = Network(scenario)
    sessions = session_factory(make_engine(settings.db_url))
    signals = SignalCache(scenario, seed=settings.signals_seed)
    live = LiveNetwork(
        net=net,
        signals=signals.current,
        executors=local_executors(net, executors_root, centers),
        clock=lambda: datetime.now(UTC),
    )
    return Services(
        dispatcher=LoopService("dispatcher", Dispatcher(sessions, live).run_once, 0.5),
        reconciler=LoopService("reconciler", Reconciler(sessions, live).run_once, 1.0),
    )
