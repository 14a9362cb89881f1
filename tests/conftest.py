"""Shared, session-scoped fixtures: scenarios, networks, signals and simulated runs.

Everything expensive (loading the built-in scenario, modelling signals, simulating the
baseline workload under every policy) is built once per test session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from suanwang.core.hardware import Precision
from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.network import PRECISION_INDEX, Network
from suanwang.core.scenario import Scenario
from suanwang.core.signals import Signals
from suanwang.scenarios.loader import load_scenario
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Cheapest, FirstFit, Greenest, Nearest, Policy
from suanwang.sim.engine import Outcome, simulate
from suanwang.sim.metrics import PolicyReport, measure
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs



def pytest_configure(config: pytest.Config) -> None:
    # pvlib (<= 0.16) calls DatetimeIndex.dayofyear, deprecated in pandas 3 (Pandas4Warning);
    # with warnings as errors every build_signals for a center with solar would fail. This is a
    # third-party deprecation, not ours: ignore exactly that message (later filters win).
    config.addinivalue_line(
        "filterwarnings", "ignore:DatetimeIndex.dayofyear is deprecated:DeprecationWarning"
    )


settings.register_profile(
    "suanwang",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile("suanwang")

START = datetime(2025, 7, 1, tzinfo=UTC)
HOURS = 48
FIXTURES = Path(__file__).parent / "fixtures" / "scenarios"
TINY_DIR = FIXTURES / "tiny"

#: Every policy, as factories (a policy may keep state between decisions).
POLICY_FACTORIES: dict[str, Callable[[], Policy]] = {
    "nearest": Nearest,
    "first-fit": FirstFit,
    "cheapest": Cheapest,
    "greenest": Greenest,
    "suanwang": SuanwangPolicy,
}


@dataclass(frozen=True)
class Run:
    jobs: list[Job]
    outcome: Outcome
    report: PolicyReport


# --------------------------------------------------------------------------- scenarios


@pytest.fixture(scope="session")
def start() -> datetime:
    return START


@pytest.fixture(scope="session")
def china() -> Scenario:
    return load_scenario("china")


@pytest.fixture(scope="session")
def china_net(china: Scenario) -> Network:
    return Network(china)


@pytest.fixture(scope="session")
def china_signals(china: Scenario) -> Signals:
    return build_signals(china, START, HOURS, seed=1)


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    return TINY_DIR


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path) -> Scenario:
    return load_scenario(tiny_dir)


@pytest.fixture(scope="session")
def tiny_net(tiny: Scenario) -> Network:
    return Network(tiny)


@pytest.fixture(scope="session")
def tiny_signals(tiny: Scenario) -> Signals:
    return build_signals(tiny, START, HOURS, seed=1)


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="session")
def china_jobs(china_net: Network) -> list[Job]:
    return synthetic_jobs(china_net, WorkloadSpec(jobs=300, days=1, seed=1), START)


@pytest.fixture(scope="session")
def china_runs(
    china_net: Network, china_signals: Signals, china_jobs: list[Job]
) -> dict[str, Run]:
    runs = {}
    for name, factory in POLICY_FACTORIES.items():
        out = simulate(china_net, china_signals, china_jobs, factory())
        rep = measure(name, china_net, china_signals, china_jobs, out, 1)
        runs[name] = Run(china_jobs, out, rep)
    return runs


# --------------------------------------------------------------------------- random jobs

GPU_STACKS = ("cuda", "cann", "dtk", "neuware")
MODELS = (ANY_ACCELERATOR, ANY_ACCELERATOR, ANY_ACCELERATOR, "a100", "ascend-910b", "h800", "h20")


@st.composite
def _job(
    draw: st.DrawFn, places: Sequence[str], idx: int, max_submit_h: float, max_run_h: float
) -> Job:
    kind = draw(st.sampled_from(list(JobKind)))
    cpu_job = kind in (JobKind.ANALYTICS, JobKind.BACKUP) and draw(st.booleans())
    if cpu_job:
        units, cpus = 0, draw(st.sampled_from([8, 16, 64, 256]))
        stacks = frozenset({"cpu"})
        accelerator = ANY_ACCELERATOR
    else:
        units = draw(st.sampled_from([1, 1, 1, 2, 4, 8, 16, 100_000]))
        cpus = units * 8
        stacks = frozenset(draw(st.sets(st.sampled_from(GPU_STACKS), min_size=1)))
        accelerator = draw(st.sampled_from(MODELS))
    # work in reference-card hours per unit: runtime on an A100-class chip <= max_run_h
    ref_h = draw(st.floats(0.02, max_run_h))
    work = ref_h * max(units, 1) if units else ref_h * cpus * 0.0012
    latency = draw(st.one_of(st.none(), st.none(), st.floats(0.5, 25.0)))
    deadline = draw(st.one_of(st.none(), st.floats(1800.0, 36 * 3600.0)))
    return Job(
        job_id=f"h-{idx}",
        submit_s=draw(st.floats(0.0, max_submit_h * 3600.0)),
        kind=kind,
        origin=draw(st.sampled_from(list(places))),
        units=units,
        cpus=cpus,
        mem_gb=8.0,
        accelerator=accelerator,
        stacks=stacks,
        work_scu=work,
        deadline_s=deadline if kind.deferrable else None,
        latency_ms=latency,
        data_gb=draw(st.sampled_from([0.0, 0.5, 20.0, 300.0])),
    )


def job_lists(
    places: Sequence[str],
    min_size: int = 1,
    max_size: int = 30,
    max_submit_h: float = 24.0,
    max_run_h: float = 6.0,
) -> st.SearchStrategy[list[Job]]:
    """Random job lists in submit order (ids unique), as the engine expects."""

    @st.composite
    def build(draw: st.DrawFn) -> list[Job]:
        n = draw(st.integers(min_size, max_size))
        jobs = [draw(_job(places, i, max_submit_h, max_run_h)) for i in range(n)]
        return sorted(jobs, key=lambda j: j.submit_s)

    return build()


@pytest.fixture(scope="session")
def random_jobs() -> Callable[..., st.SearchStrategy[list[Job]]]:
    return job_lists


# --------------------------------------------------------------------------- invariants


def assert_outcome_valid(net: Network, jobs: Sequence[Job], out: Outcome) -> None:
    """Hard invariants every policy's simulated outcome must satisfy."""
    n = len(jobs)
    for arr in (out.pool, out.release_s, out.start_s, out.end_s, out.latency_ms):
        assert arr.shape == (n,)
    eps = 1e-6

    for i, job in enumerate(jobs):
        p = int(out.pool[i])
        info = net.job_class(job)
        if p < 0:
            # rejected only when there is no feasible pool at all, and never started
            assert info.pools.size == 0, f"job {i} rejected although feasible pools exist"
            assert np.isnan(out.start_s[i])
            assert np.isnan(out.end_s[i])
            continue
        assert p in set(info.pools.tolist())
        # compatibility
        speed = net.pool_speed[p, PRECISION_INDEX[job.precision]]
        assert speed > 0, f"job {i} ({job.precision}) on pool {p} that cannot run it"
        if job.precision is Precision.CPU:
            assert net.pool_is_cpu[p], f"CPU job {i} on accelerator pool {p}"
        else:
            assert not net.pool_is_cpu[p]
            assert net.pool_stack[p] in job.stacks, f"job {i} on stack {net.pool_stack[p]}"
            if job.accelerator != ANY_ACCELERATOR:
                assert net.pool_model[p] == job.accelerator
        assert job.demand_units <= net.pool_capacity[p]
        # latency
        bound = job.effective_latency_ms
        lat = float(out.latency_ms[i])
        assert lat == pytest.approx(net.latency_ms[net.place(job.origin), net.pool_center[p]])
        if bound is not None:
            assert lat <= bound + 1e-9, f"job {i} latency {lat} > bound {bound}"
        # time order
        assert out.release_s[i] >= job.submit_s - eps
        if not np.isnan(out.start_s[i]):
            assert out.start_s[i] >= job.submit_s - eps, f"job {i} started before submit"
            assert out.start_s[i] >= out.release_s[i] - eps
            assert out.start_s[i] <= out.horizon_s + eps
        if not np.isnan(out.end_s[i]):
            assert not np.isnan(out.start_s[i])
            assert out.end_s[i] <= out.horizon_s + eps
            runtime = job.work_scu / (job.demand_units * speed) * 3600.0
            assert out.end_s[i] - out.start_s[i] == pytest.approx(runtime, rel=1e-9, abs=1e-6)

    # capacity at every instant, per pool: sweep start (+units) and end (-units) events;
    # at equal times ends come first (a finishing job frees its units for one starting then)
    started = np.flatnonzero(~np.isnan(out.start_s))
    for p in np.unique(out.pool[started]):
        idx = started[out.pool[started] == p]
        events: list[tuple[float, int, int]] = []
        for j in idx:
            u = jobs[int(j)].demand_units
            events.append((float(out.start_s[j]), 1, u))
            end = out.end_s[j]
            events.append((float(np.inf if np.isnan(end) else end), 0, -u))
        events.sort()
        running = 0
        cap = int(net.pool_capacity[p])
        for t, _, du in events:
            running += du
            assert running <= cap, f"pool {p} over capacity at t={t}: {running} > {cap}"


def assert_accounting(jobs: Sequence[Job], out: Outcome, report: PolicyReport) -> None:
    m = report.metrics
    n = len(jobs)
    completed = int((~np.isnan(out.end_s)).sum())
    rejected = int((out.pool < 0).sum())
    unfinished = int(((out.pool >= 0) & np.isnan(out.end_s)).sum())
    assert m["completed"] == completed
    assert m["rejected"] == rejected
    assert m["unfinished"] == unfinished
    assert m["completed"] + m["rejected"] + m["unfinished"] == n
    assert m["latency_violations"] == 0


def assert_same_outcome(a: Outcome, b: Outcome) -> None:
    for name in ("pool", "release_s", "start_s", "end_s", "latency_ms", "transfer_cost_cny"):
        x, y = getattr(a, name), getattr(b, name)
        assert np.array_equal(x, y, equal_nan=True), f"outcome.{name} differs between runs"
    assert a.decisions == b.decisions
    assert a.horizon_s == b.horizon_s


@pytest.fixture(scope="session")
def check_outcome() -> Callable[[Network, Sequence[Job], Outcome], None]:
    return assert_outcome_valid


@pytest.fixture(scope="session")
def check_accounting() -> Callable[[Sequence[Job], Outcome, PolicyReport], None]:
    return assert_accounting


@pytest.fixture(scope="session")
def check_same_outcome() -> Callable[[Outcome, Outcome], None]:
    return assert_same_outcome
