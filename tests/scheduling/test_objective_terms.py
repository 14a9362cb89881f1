"""The explanation's terms (:func:`suanwang.scheduling.objective.terms`, compiled) are the
module docstring's formulas evaluated by numpy, to the bit: what the dispatcher stores did not
change when they were compiled."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanwang.core.cost import HOUR_S
from suanwang.core.jobs import Job
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.objective import Objective, Terms, terms


def _numpy_terms(
    o: Objective, job: Job, info: object, pos: np.ndarray, start_s: np.ndarray, now_s: float,
    sig: Signals,
) -> Terms:  # fmt: skip
    """The formulas as numpy evaluated them before they were compiled (no offers)."""
    units = job.demand_units
    speed, kw = info.speed[pos], info.facility_kw_per_unit[pos]  # type: ignore[attr-defined]
    centers = info.centers[pos]  # type: ignore[attr-defined]
    runtime = job.work_scu / (units * speed) * HOUR_S
    power = units * kw
    end = start_s + runtime
    over = {
        w: sig.cumulative(w, centers, end) - sig.cumulative(w, centers, start_s)
        for w in ("forecast_price", "forecast_carbon", "forecast_green")
    }
    carbon_kg = power * over["forecast_carbon"] / 1000.0
    return Terms(
        energy_cost_cny=power * over["forecast_price"],
        carbon_cost_cny=o.carbon_price_cny_per_kg * carbon_kg,
        transfer_cost_cny=job.data_gb * info.transfer_cost_cny_per_gb[pos],  # type: ignore[attr-defined]
        waiting_cost_cny=o.wait_price_cny_per_kwh * power * (start_s - now_s) / HOUR_S,
        offer_premium_cny=np.zeros(pos.size),
        energy_kwh=power * runtime / HOUR_S,
        carbon_kg=carbon_kg,
        green_kwh=power * over["forecast_green"],
        runtime_s=runtime,
        transfer_s=job.data_gb * info.transfer_s_per_gb[pos],  # type: ignore[attr-defined]
    )


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    carbon=st.floats(0.0, 2.0),
    wait=st.floats(0.0, 0.5),
    # starts before the signals, inside them and past their horizon (extrapolated)
    offsets=st.lists(st.floats(-7200.0, 3.0e6), min_size=1, max_size=6),
)
def test_compiled_terms_are_numpys_to_the_bit(
    china_net: Network,
    china_signals: Signals,
    random_jobs: Callable[..., st.SearchStrategy[list[Job]]],
    data: st.DataObject,
    carbon: float,
    wait: float,
    offsets: list[float],
) -> None:
    o = Objective(carbon_price_cny_per_kg=carbon, wait_price_cny_per_kwh=wait)
    for job in data.draw(random_jobs(china_net.place_ids[:12], max_size=3, max_run_h=30.0)):
        info = china_net.job_class(job)
        if info.pools.size == 0:
            continue
        k = len(offsets)
        pos = np.array(data.draw(st.lists(st.integers(0, info.pools.size - 1), min_size=k,
                                          max_size=k)), dtype=np.int64)  # fmt: skip
        start_s = job.submit_s + np.array(offsets)
        got = terms(o, job, info, pos, start_s, job.submit_s, china_signals)
        want = _numpy_terms(o, job, info, pos, start_s, job.submit_s, china_signals)
        for name in Terms.__dataclass_fields__:
            a, b = getattr(got, name), getattr(want, name)
            assert a.tobytes() == b.tobytes(), (name, a, b)
