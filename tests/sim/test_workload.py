"""The synthetic workload generator."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.core.hardware import Precision, speed_scu_per_hour
from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.network import Network
from suanwang.sim.workload import DIURNAL, WorkloadSpec, origin_sampler, synthetic_jobs

START = datetime(2025, 7, 1, tzinfo=UTC)
EAST_REGIONS = {"east", "north", "south"}
WEST_REGIONS = {"northwest", "southwest"}


@pytest.fixture(scope="module")
def jobs_2000(china_net: Network) -> list[Job]:
    return synthetic_jobs(china_net, WorkloadSpec(jobs=2000, days=1, seed=11), START)


def _regions(net: Network, jobs: list[Job]) -> Counter[str]:
    return Counter(net.regions[int(net.place_region[net.place(j.origin)])] for j in jobs)


def test_deterministic_with_seed(china_net: Network) -> None:
    a = synthetic_jobs(china_net, WorkloadSpec(jobs=300, days=2, seed=4), START)
    b = synthetic_jobs(china_net, WorkloadSpec(jobs=300, days=2, seed=4), START)
    c = synthetic_jobs(china_net, WorkloadSpec(jobs=300, days=2, seed=5), START)
    assert a == b
    assert [j.labels for j in a] == [j.labels for j in b]
    assert a != c


def test_basic_shape(china_net: Network, jobs_2000: list[Job]) -> None:
    jobs = jobs_2000
    assert len(jobs) == 2000
    assert len({j.job_id for j in jobs}) == 2000
    submit = [j.submit_s for j in jobs]
    assert submit == sorted(submit)
    assert submit[0] >= 0 and submit[-1] < 86400.0
    for j in jobs:
        china_net.check_job(j)  # every name exists
        assert j.work_scu > 0
        assert j.accelerator == ANY_ACCELERATOR
        assert j.data_gb >= 0
        if j.cards == 0:
            assert j.kind in (JobKind.ANALYTICS, JobKind.BACKUP)
            assert j.stacks == frozenset({"cpu"})
            assert j.cpus > 0
            assert j.precision is Precision.CPU
        else:
            assert j.stacks and "cpu" not in j.stacks
            assert 1 <= j.cards <= 64
        if j.deadline_s is not None:
            assert j.kind.deferrable
            assert j.deadline_s > 0
    kinds = Counter(j.kind for j in jobs)
    assert set(kinds) == set(JobKind)
    assert kinds[JobKind.INFERENCE] > kinds[JobKind.BACKUP]
    # about 30% of deferrable jobs carry a deadline
    deferrable = [j for j in jobs if j.kind.deferrable]
    share = sum(j.deadline_s is not None for j in deferrable) / len(deferrable)
    assert 0.2 < share < 0.4
    # most accelerator jobs use one card
    gpu = [j for j in jobs if j.cards > 0]
    assert sum(j.cards == 1 for j in gpu) / len(gpu) > 0.4


def test_origins_mostly_east(china_net: Network, jobs_2000: list[Job]) -> None:
    regions = _regions(china_net, jobs_2000)
    n = len(jobs_2000)
    east = sum(regions[r] for r in EAST_REGIONS) / n
    west = sum(regions[r] for r in WEST_REGIONS) / n
    assert east > west
    assert east > 0.5
    assert west < 0.25
    # the sampler itself: a probability per place, east heavier than west
    places, p = origin_sampler(china_net)
    assert p.sum() == pytest.approx(1.0)
    assert np.all(p >= 0)
    assert set(places) <= set(china_net.place_ids)
    w = dict(zip(places, p, strict=True))
    assert w["guangdong"] > w["ningxia"]
    assert w["shanghai"] > w["gansu"]


def test_origin_sampler_follows_demand_weight(china_net: Network) -> None:
    sc = china_net.scenario
    places, p = origin_sampler(china_net)
    prob = dict(zip(places, p, strict=True))
    total = sum(pr.demand_weight for pr in sc.provinces)
    for prov in sc.provinces:
        cities = [c.id for c in sc.cities if c.province == prov.id]
        share = prov.demand_weight / total
        assert prob[prov.id] + sum(prob[c] for c in cities) == pytest.approx(share)
        if cities:
            # 40% of a province's demand comes from its named cities, split evenly
            assert sum(prob[c] for c in cities) == pytest.approx(0.4 * share)
            assert len({round(prob[c], 12) for c in cities}) == 1


def test_diurnal_arrivals_in_local_time(china_net: Network, jobs_2000: list[Job]) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    local = Counter((START + timedelta(seconds=j.submit_s)).astimezone(tz).hour for j in jobs_2000)
    day = sum(local[h] for h in range(10, 17))
    night = sum(local[h] for h in range(2, 6))
    # the profile's day hours are ~5x its night hours per hour
    assert day / 7 > 2.5 * night / 4
    assert DIURNAL.argmax() in range(9, 18)


def test_same_instant_in_another_zone_gives_same_jobs(china_net: Network) -> None:
    spec = WorkloadSpec(jobs=200, days=1, seed=3)
    utc = synthetic_jobs(china_net, spec, START)
    local = synthetic_jobs(china_net, spec, START.astimezone(ZoneInfo("Asia/Shanghai")))
    assert [j.submit_s for j in utc] == [j.submit_s for j in local]


def _offered(net: Network, jobs: list[Job]) -> tuple[float, float]:
    """Offered card-hours and core-hours on the reference chips (work / reference speed)."""
    a100 = net.scenario.catalog.get("a100")
    cpu = next(a for a in net.scenario.catalog.accelerators if a.is_cpu)
    card_h = sum(j.work_scu / speed_scu_per_hour(a100, j.precision) for j in jobs if j.cards)
    core_h = sum(j.work_scu / speed_scu_per_hour(cpu, Precision.CPU) for j in jobs if not j.cards)
    return card_h, core_h


@pytest.mark.parametrize("days", [0.5, 1.5])
def test_fractional_days_have_no_arrival_spike(tiny_net: Network, days: float) -> None:
    jobs = synthetic_jobs(tiny_net, WorkloadSpec(jobs=1000, days=days, seed=1), START)
    most = Counter(j.submit_s for j in jobs).most_common(1)[0][1]
    assert most <= 10


@pytest.mark.parametrize(
    ("which", "n", "load", "days"),
    [("tiny", 400, 0.2, 1.0), ("tiny", 400, 0.7, 2.0), ("china", 20_000, 0.05, 1.0)],
)
def test_load_scaling(
    which: str, n: int, load: float, days: float, tiny_net: Network, china_net: Network
) -> None:
    net = tiny_net if which == "tiny" else china_net
    jobs = synthetic_jobs(net, WorkloadSpec(jobs=n, days=days, seed=2, load=load), START)
    cards = int(net.pool_capacity[~net.pool_is_cpu].sum())
    cores = int(net.pool_capacity[net.pool_is_cpu].sum())
    card_h, core_h = _offered(net, jobs)
    assert card_h == pytest.approx(load * cards * days * 24, rel=0.01)
    assert core_h == pytest.approx(load * cores * days * 24, rel=0.01)


def test_load_beyond_what_few_jobs_can_offer(tiny_net: Network) -> None:
    """Few jobs cannot offer a huge load: every job is capped, the offer falls short."""
    jobs = synthetic_jobs(tiny_net, WorkloadSpec(jobs=5, days=1, seed=2, load=50.0), START)
    cards = int(tiny_net.pool_capacity[~tiny_net.pool_is_cpu].sum())
    card_h, _ = _offered(tiny_net, jobs)
    assert 0 < card_h < 50.0 * cards * 24


def test_load_none_keeps_natural_durations(china_net: Network) -> None:
    a = synthetic_jobs(china_net, WorkloadSpec(jobs=500, days=1, seed=2), START)
    b = synthetic_jobs(china_net, WorkloadSpec(jobs=500, days=1, seed=2, load=0.5), START)
    assert [j.submit_s for j in a] == [j.submit_s for j in b]
    assert [j.origin for j in a] == [j.origin for j in b]
    assert sum(j.work_scu for j in a) != pytest.approx(sum(j.work_scu for j in b))


def test_invalid_specs(china_net: Network) -> None:
    with pytest.raises(ValueError):
        synthetic_jobs(china_net, WorkloadSpec(jobs=-1, days=1), START)
    with pytest.raises(ValueError):
        synthetic_jobs(china_net, WorkloadSpec(jobs=10, days=0), START)
    assert synthetic_jobs(china_net, WorkloadSpec(jobs=0, days=1), START) == []


@given(
    n=st.integers(1, 60),
    days=st.sampled_from([0.5, 1.0, 2.0, 3.5]),
    seed=st.integers(0, 2**16),
)
def test_arrivals_within_the_days(china_net: Network, n: int, days: float, seed: int) -> None:
    jobs = synthetic_jobs(china_net, WorkloadSpec(jobs=n, days=days, seed=seed), START)
    assert len(jobs) == n
    submit = np.array([j.submit_s for j in jobs])
    assert np.all(submit >= 0)
    assert np.all(submit < days * 86400.0)
    assert np.all(np.diff(submit) >= 0)
    assert all(j.origin in china_net.place_index for j in jobs)


def test_custom_mix(china_net: Network) -> None:
    spec = WorkloadSpec(jobs=200, days=1, seed=1, mix={JobKind.HPC: 1.0})
    jobs = synthetic_jobs(china_net, spec, START)
    assert {j.kind for j in jobs} == {JobKind.HPC}
    assert all(j.precision is Precision.FP64 for j in jobs)
    assert all(j.stacks <= {"cuda", "dtk"} for j in jobs)
