"""A standby placer's preparation (docs/operations.md, "Replicated control plane").

Of the workers on one database, one is elected placer; the others stand by and take over when
it dies. Election is quick (its lock is free the moment the dead leader's connection closes),
but a placer's first round does once what later rounds do not: it builds the hour's grid
signals (and imports the libraries that make them: pvlib, SciPy), loads the engine's compiled
code (numba's cache), and reads and costs every active job for the live state. On this
project's 2-vCPU machine that was 1.2 s on a quiet host and about 3 s under load: every job
submitted around a leader's death waited that long (docs/benchmarks.md, "A standby that is
ready").

So while a worker is not the placer, its dispatcher's loop runs :class:`Standby` instead (each
time its election is tried): once per hour of signals it builds them, reads and costs the
active jobs into the live state's caches, and decides one made-up job through the placement
seam, writing nothing. The pending jobs are not read (the new placer reads them afresh: its
term is new, and another placer may have written meanwhile).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from suanwang.scheduling.placement import place
from suanwang.scheduling.policies import Policy
from suanwang.scheduling.state import NO_MARKET
from suanwang.server.decisions import decision_record
from suanwang.server.models.job_specs import engine_job
from suanwang.server.services.live import LiveNetwork, load_trading

log = logging.getLogger("suanwang.dispatcher")

#: The job decided to prepare the engine: the smallest a scenario runs (one CPU, a minute),
#: from the scenario's first place
WARM_UP_SPEC: dict[str, Any] = {
    "name": "warm-up",
    "command": "true",
    "resources": {"cpus": 1},
    "duration_s": 60,
}


@dataclass
class Standby:
    """Prepares a worker that is not the placer to place at once when elected (module
    docstring). Called from the dispatcher's thread; returns whether it did anything."""

    sessions: sessionmaker[Session]
    live: LiveNetwork
    policy: Policy
    #: the start of the signals it prepared for (None: not yet)
    ready_for: datetime | None = field(default=None, init=False)

    def __call__(self) -> bool:
        signals = self.live.signals()
        if self.ready_for == signals.start:
            return False
        net = self.live.net
        with self.sessions() as session:  # read only: closed without a commit
            trading = load_trading(session, net, signals)
            state = self.live.state(session, signals, trading, [])
        job = engine_job(
            {**WARM_UP_SPEC, "origin": next(iter(net.place_index))},
            net,
            job_id="warm-up",
            tenant="",
            name="warm-up",
            submitted_at=self.live.clock(),
            t0=signals.start,
        )
        info = net.job_class(job)
        if info.pools.size:  # a scenario without CPUs prepares all but the decision
            placed = place(job, info, state, self.policy, NO_MARKET, explain=True)
            decision_record(placed, self.policy.name, signals.start, None)
        self.ready_for = signals.start
        log.info("standing by, ready to place (signals from %s)", signals.start.isoformat())
        return True
