"""The compiled network: pools, places, links and per-job feasibility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.core.hardware import Precision, speed_scu_per_hour
from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.network import PRECISION_INDEX, Network, UnknownName
from suanwang.core.scenario import Scenario


def _job(**kw: object) -> Job:
    base: dict[str, object] = {
        "job_id": "j",
        "submit_s": 0.0,
        "kind": JobKind.TRAINING,
        "origin": "beijing",
        "cards": 1,
        "cpus": 8,
        "mem_gb": 8.0,
        "accelerator": ANY_ACCELERATOR,
        "stacks": frozenset({"cuda"}),
        "work_scu": 1.0,
    }
    base.update(kw)
    return Job(**base)  # type: ignore[arg-type]


def test_pools_match_inventory(china: Scenario, china_net: Network) -> None:
    net = china_net
    for ci, c in enumerate(china.centers):
        mine = net.pool_center == ci
        models = np.array(net.pool_model)[mine]
        cards = {m: int(n) for m, n in zip(models, net.pool_capacity[mine], strict=True)}
        for model, n in c.inventory:
            if n > 0:
                assert cards[model] == n
        cpu = [p for p in np.flatnonzero(mine) if net.pool_is_cpu[p]]
        if c.cpu_cores:
            assert len(cpu) == 1
            assert net.pool_capacity[cpu[0]] == c.cpu_cores
        else:
            assert not cpu
    acc = ~net.pool_is_cpu
    assert int(net.pool_capacity[acc].sum()) == china.total_cards
    # facility power = unit power x PUE
    for p in range(net.n_pools):
        acc_p = china.catalog.get(net.pool_model[p])
        pue = china.centers[int(net.pool_center[p])].pue
        assert net.pool_facility_kw[p] == pytest.approx(acc_p.unit_power_w() / 1000 * pue)
        for prec, k in PRECISION_INDEX.items():
            assert net.pool_speed[p, k] == speed_scu_per_hour(acc_p, prec)


def test_places_and_links(china: Scenario, china_net: Network) -> None:
    net = china_net
    ids = net.place_ids
    assert ids[: len(china.provinces)] == tuple(p.id for p in china.provinces)
    assert set(ids[len(china.provinces) :]) == {c.id for c in china.cities}
    same = china.network.same_region
    cross = china.network.cross_region
    sh, zw = net.place("shanghai"), net.center_index["zhongwei"]
    wx = net.center_index["nscc-wuxi"]
    assert net.transfer_cost_cny_per_gb[sh, wx] == same.transfer_cost_cny_per_gb
    assert net.transfer_cost_cny_per_gb[sh, zw] == cross.transfer_cost_cny_per_gb
    assert np.all(net.bandwidth_gbps <= net.center_egress_gbps[None, :])
    np.testing.assert_allclose(net.transfer_s_per_gb, 8.0 / net.bandwidth_gbps)


def test_unknown_names(china_net: Network) -> None:
    with pytest.raises(UnknownName, match="origin"):
        china_net.check_job(_job(origin="atlantis"))
    with pytest.raises(UnknownName, match="accelerator"):
        china_net.check_job(_job(accelerator="tpu-v9"))
    with pytest.raises(UnknownName, match="stack"):
        china_net.check_job(_job(stacks=frozenset({"cuda", "rocm-x"})))
    china_net.check_job(_job())


def test_job_class_hpc_excludes_chips_without_fp64(china_net: Network) -> None:
    info = china_net.job_class(_job(kind=JobKind.HPC, stacks=frozenset({"cuda", "cann", "dtk"})))
    assert info.pools.size > 0
    models = {china_net.pool_model[p] for p in info.pools}
    assert "ascend-910b" not in models
    assert np.all(info.speed > 0)


def test_job_class_cpu_jobs_only_on_cpu(china_net: Network) -> None:
    info = china_net.job_class(
        _job(kind=JobKind.ANALYTICS, cards=0, cpus=64, stacks=frozenset({"cpu"}))
    )
    assert info.pools.size > 0
    assert np.all(china_net.pool_is_cpu[info.pools])


def test_job_class_named_accelerator(china_net: Network) -> None:
    info = china_net.job_class(_job(accelerator="h20"))
    assert info.pools.size > 0
    assert {china_net.pool_model[p] for p in info.pools} == {"h20"}
    # a named accelerator on a stack it does not use: nothing is feasible
    info = china_net.job_class(_job(accelerator="h20", stacks=frozenset({"cann"})))
    assert info.pools.size == 0


def test_job_class_too_big_is_empty(china_net: Network) -> None:
    too_big = int(china_net.pool_capacity.max()) + 1
    assert china_net.job_class(_job(cards=too_big)).pools.size == 0


@given(
    origin=st.sampled_from(["beijing", "shanghai", "guangzhou", "zhongwei", "urumqi", "xizang"]),
    kind=st.sampled_from(list(JobKind)),
    units=st.sampled_from([0, 1, 8, 64, 4096]),
    stacks=st.sets(st.sampled_from(["cuda", "cann", "dtk", "neuware"]), min_size=1),
    accelerator=st.sampled_from([ANY_ACCELERATOR, "a100", "ascend-910b", "dcu-z100", "h800"]),
    latency=st.one_of(st.none(), st.floats(0.1, 30.0)),
)
def test_job_class_is_exactly_the_feasible_set(
    china_net: Network,
    origin: str,
    kind: JobKind,
    units: int,
    stacks: set[str],
    accelerator: str,
    latency: float | None,
) -> None:
    net = china_net
    job = _job(
        origin=origin,
        kind=kind,
        cards=units,
        cpus=max(units, 1) * 8,
        stacks=frozenset(stacks),
        accelerator=accelerator,
        latency_ms=latency,
    )
    info = net.job_class(job)
    o = net.place(origin)
    k = PRECISION_INDEX[job.precision]
    expected = set()
    for p in range(net.n_pools):
        ok = net.pool_speed[p, k] > 0 and net.pool_capacity[p] >= job.demand_units
        if job.precision is Precision.CPU:
            ok = ok and bool(net.pool_is_cpu[p])
        else:
            ok = ok and net.pool_stack[p] in job.stacks
            ok = ok and (accelerator == ANY_ACCELERATOR or net.pool_model[p] == accelerator)
        bound = job.effective_latency_ms
        if bound is not None:
            ok = ok and net.latency_ms[o, net.pool_center[p]] <= bound
        if ok:
            expected.add(p)
    assert set(info.pools.tolist()) == expected
    # nearest first, aligned arrays
    assert np.all(np.diff(info.latency_ms) >= 0)
    np.testing.assert_array_equal(info.centers, net.pool_center[info.pools])
    np.testing.assert_allclose(info.latency_ms, net.latency_ms[o, info.centers])
    np.testing.assert_allclose(info.speed, net.pool_speed[info.pools, k])
    np.testing.assert_allclose(info.facility_kw_per_unit, net.pool_facility_kw[info.pools])


@given(
    origin=st.sampled_from(["beijing", "shanghai", "guizhou", "xinjiang"]),
    kind=st.sampled_from(list(JobKind)),
    cards=st.integers(0, 16),
    latency=st.one_of(st.none(), st.floats(0.1, 30.0)),
)
def test_job_class_by_the_jobs_fields_is_the_class_of_its_key(
    china_net: Network, origin: str, kind: JobKind, cards: int, latency: float | None
) -> None:
    """The lookup by the job's own fields (read for every simulated job) finds the class of
    the class key, made once: the same object for jobs whose fields differ but whose key
    does not; the Python lists are the arrays' numbers."""
    job = _job(origin=origin, kind=kind, cards=cards, cpus=8, latency_ms=latency)
    info = china_net.job_class(job)
    fresh = Network(china_net.scenario)
    again = fresh._job_class(job)  # the class key's class, built again
    np.testing.assert_array_equal(again.pools, info.pools)
    np.testing.assert_array_equal(again.transfer_s_per_gb, info.transfer_s_per_gb)
    twin = _job(origin=origin, kind=kind, cards=cards, cpus=8, latency_ms=job.effective_latency_ms)
    assert china_net.job_class(twin) is china_net._job_class(job)
    assert info.pool_list == tuple(info.pools.tolist())
    assert info.latency_list == tuple(info.latency_ms.tolist())
    assert info.transfer_cost_list == tuple(info.transfer_cost_cny_per_gb.tolist())
    assert all(type(p) is int for p in info.pool_list)
    keep = np.arange(info.pools.size) % 2 == 0
    assert info.subset(keep).pool_list == tuple(info.pools[keep].tolist())


@given(seed=st.integers(0, 2**32 - 1))
def test_a_class_cut_to_the_same_pools_is_the_same_object(china_net: Network, seed: int) -> None:
    """Cutting a class to the same pools again gives the object made the first time (the
    planner keeps its rows by identity); another cut, another class's or a full one differs,
    and every cut holds the numbers of the pools it keeps."""
    from suanwang.core import network

    info = china_net.job_class(_job())
    other = china_net.job_class(_job(kind=JobKind.HPC, stacks=frozenset({"cuda", "dtk"})))
    rng = np.random.default_rng(seed)
    keep = rng.random(info.pools.size) < 0.5
    keep[0], keep[-1] = True, False
    cut = info.subset(keep)
    np.testing.assert_array_equal(cut.pools, info.pools[keep])
    np.testing.assert_array_equal(cut.speed, info.speed[keep])
    np.testing.assert_array_equal(cut.transfer_s_per_gb, info.transfer_s_per_gb[keep])
    assert cut.pool_list == tuple(info.pools[keep].tolist())
    assert info.subset(keep.copy()) is cut
    assert info.subset(~keep) is not cut
    assert info.subset(np.ones(info.pools.size, dtype=bool)) is info
    if other.pools.size == info.pools.size:
        assert other.subset(keep) is not cut
    network._SUBSETS.clear()  # dropped (when too many are kept): made again, the same numbers
    again = info.subset(keep)
    assert again is not cut
    np.testing.assert_array_equal(again.pools, cut.pools)


def test_cuts_kept_are_bounded(china_net: Network) -> None:
    """However many cuts are made, at most :data:`SUBSETS_KEPT` are kept."""
    from suanwang.core import network

    info = china_net.job_class(_job())
    n = info.pools.size
    for i in range(network.SUBSETS_KEPT + 10):
        keep = np.zeros(n, dtype=bool)
        keep[i % n] = True
        keep[(i // n) % n] = True
        keep[(i // (n * n)) % n] = True
        info.subset(keep)
        assert len(network._SUBSETS) <= network.SUBSETS_KEPT
