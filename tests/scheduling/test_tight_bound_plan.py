"""The tight bound's plan (what the LP chose, for comparing a policy with it)."""

from __future__ import annotations

import numpy as np
import pytest
from test_bound import finishable

from suanwang.core.jobs import Job
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.tight_bound import tight_bound


def test_plan_accounts_for_the_bound_and_leaves_it_unchanged(
    china_net: Network, china_signals: Signals, china_jobs: list[Job]
) -> None:
    jobs = finishable(china_net, china_jobs)
    plain = tight_bound(china_net, china_signals, jobs)
    plan: dict[str, np.ndarray] = {}
    with_plan = tight_bound(china_net, china_signals, jobs, plan=plan)
    assert with_plan.cost_cny == plain.cost_cny
    whole = [j for j in jobs if not j.checkpointable and china_net.job_class(j).pools.size]
    assert plan["jobs"].sum() + plan["expired"].sum() == pytest.approx(len(whole))
    assert (plan["start_h"] >= plan["arrival_h"]).all()
    kwh = plan["kwh"].sum() + plan["fluid_kwh"].sum()
    assert kwh == pytest.approx(plain.energy_kwh)
    # what the LP charges its columns and fluid work: no more than the bound itself
    charged = plan["cny"].sum() + plan["fluid_cny"].sum() + plan["expired_cny"].sum()
    assert charged + plan["fluid_expired_cny"].sum() <= plain.cost_cny * (1 + 1e-9)
