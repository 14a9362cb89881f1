"""Shared, session-scoped fixtures: scenarios, networks, signals and simulated runs.

Everything expensive (loading the built-in scenario, modelling signals, simulating the
baseline workload under every policy) is built once per test session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import pwd
import secrets
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from suanwang.billing.market import scu_prices
from suanwang.billing.offers import Offer, OfferBook, OfferType
from suanwang.billing.pricing import PriceBook
from suanwang.core.hardware import Precision
from suanwang.core.jobs import ANY_ACCELERATOR, Job, JobKind
from suanwang.core.lifecycle import STATE_CODE, JobState
from suanwang.core.network import PRECISION_INDEX, Network
from suanwang.core.scenario import Scenario
from suanwang.core.signals import Signals
from suanwang.executors.local.cgroups import CGROUP_ROOT
from suanwang.executors.local.sandbox import ACCOUNT_PREFIX
from suanwang.scenarios.loader import load_scenario
from suanwang.scenarios.signals import build_signals
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.scheduling.policies import Cheapest, FirstFit, Greenest, Nearest, Policy
from suanwang.scheduling.state import Market
from suanwang.sim.engine import Outcome, simulate
from suanwang.sim.metrics import PolicyReport, measure
from suanwang.sim.workload import WorkloadSpec, synthetic_jobs
from suanwang.testbed.slurm import Testbed
from suanwang.testbed.slurm import down as testbed_down
from suanwang.testbed.slurm import up as testbed_up

# The local executor's sandbox makes a Unix account per tenant on first use, and each local
# executor (per root) a parent cgroup for its runs' cgroups; the tests make many tenants and
# roots. What the session made is removed when it ends: by the process that runs the tests, or
# with pytest-xdist by the controller once every worker has finished (a worker cleaning up would
# pull an account or a cgroup from under another worker's running test).
_CGROUP_HIERARCHIES = (CGROUP_ROOT, CGROUP_ROOT / "memory", CGROUP_ROOT / "pids")
_BEFORE_SESSION: dict[str, set[str]] = {}


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    if _is_xdist_worker(session.config):
        return
    _BEFORE_SESSION["accounts"] = {p.pw_name for p in pwd.getpwall()}
    _BEFORE_SESSION["cgroups"] = {str(p) for h in _CGROUP_HIERARCHIES for p in h.glob("suanwang-*")}


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _is_xdist_worker(session.config) or not _BEFORE_SESSION:
        return
    # accounts: one with processes left is kept (``userdel`` refuses)
    for entry in pwd.getpwall():
        if (
            entry.pw_name.startswith(ACCOUNT_PREFIX)
            and entry.pw_name not in _BEFORE_SESSION["accounts"]
        ):
            subprocess.run(["userdel", entry.pw_name], capture_output=True, check=False)
    # cgroups: the parents made, and the cgroups of runs in them that no executor finalized (a
    # test that ends while its job runs), once they hold no process
    for h in _CGROUP_HIERARCHIES:
        for parent in h.glob("suanwang-*"):
            if str(parent) in _BEFORE_SESSION["cgroups"]:
                continue
            for cgroup in [*parent.glob("run-*"), parent]:
                with contextlib.suppress(OSError):
                    cgroup.rmdir()  # refused while a process is in it


@pytest.fixture(autouse=True)
def _root_logger() -> Iterator[None]:
    """``suanwang serve|worker|agent`` point the root logger at stderr (``server.logs.
    configure``); run in a test's CliRunner, that stderr is closed when the command returns,
    and a later test's logs (alembic's, at INFO) would write "--- Logging error ---" into
    another command's output. Put the root logger back as it was after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Mark the tests of real Slurm testbeds ``slurm``: ``make test`` runs the others on two
    processes (pytest-xdist) and these after them in one, one at a time (two testbeds' power
    cuts and restarts at once on two cores starve each other's daemons past the tests' waits)."""
    path = item.path
    if path.parent.name == "slurm" or "slurm" in path.stem:
        item.add_marker(pytest.mark.slurm)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-at",
        metavar="INSTANT",
        help="run with the wall clock moved to INSTANT (ISO 8601, e.g. 2026-12-05T20:10:00Z) "
        "and ticking from there (time-machine): the tests must pass at any hour",
    )


def pytest_configure(config: pytest.Config) -> None:
    at = config.getoption("--clock-at")
    if at:
        import time_machine

        destination = datetime.fromisoformat(at)
        if destination.tzinfo is None:
            raise pytest.UsageError(f"--clock-at {at}: give a time zone (e.g. Z for UTC)")
        traveller = time_machine.travel(destination, tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)
        moved = abs((datetime.now(UTC) - destination).total_seconds())
        assert moved < 60, f"--clock-at: the clock did not move ({moved:.0f} s away)"
    # pvlib (<= 0.16) calls DatetimeIndex.dayofyear, deprecated in pandas 3 (Pandas4Warning);
    # with warnings as errors every build_signals for a center with solar would fail. This is a
    # third-party deprecation, not ours: ignore exactly that message (later filters win).
    config.addinivalue_line(
        "filterwarnings", "ignore:DatetimeIndex.dayofyear is deprecated:DeprecationWarning"
    )


PG_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


def _postgres_dsn() -> str:
    """A reachable libpq DSN, or fail (skip only when SUANWANG_NO_POSTGRES=1)."""
    if os.environ.get("SUANWANG_NO_POSTGRES") == "1":
        pytest.skip("PostgreSQL disabled by SUANWANG_NO_POSTGRES=1")
    explicit = os.environ.get("SUANWANG_TEST_PG_URL")
    errors = []
    for dsn in [explicit] if explicit else PG_CANDIDATES:
        try:
            with psycopg.connect(dsn, connect_timeout=5):
                return dsn
        except psycopg.Error as exc:
            errors.append(f"{dsn}: {exc}".strip())
    pytest.fail(
        "PostgreSQL is unreachable (set SUANWANG_NO_POSTGRES=1 to run the SQLite half only):\n"
        + "\n".join(errors)
    )


@contextmanager
def _pg_schema(prefix: str = "t") -> Iterator[str]:
    """A SQLAlchemy URL into a new, empty schema on the test server (chosen through
    ``search_path``); the schema is dropped afterwards."""
    dsn = _postgres_dsn()
    schema = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        rest = dsn.removeprefix("postgresql://")
        yield f"postgresql+psycopg://{rest}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def pg_schema() -> Callable[..., AbstractContextManager[str]]:
    """Throwaway PostgreSQL schemas: ``with pg_schema() as url: ...`` (fails when the server
    is unreachable; skips only with SUANWANG_NO_POSTGRES=1)."""
    return _pg_schema


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
def china_runs(china_net: Network, china_signals: Signals, china_jobs: list[Job]) -> dict[str, Run]:
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
def _job(draw: st.DrawFn, places: tuple[str, ...], max_submit_h: float, max_run_h: float) -> Job:
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
        job_id="h",
        submit_s=draw(st.floats(0.0, max_submit_h * 3600.0)),
        kind=kind,
        origin=draw(st.sampled_from(list(places))),
        cards=units,
        cpus=cpus,
        mem_gb=8.0,
        accelerator=accelerator,
        stacks=stacks,
        work_scu=work,
        deadline_s=deadline if kind.deferrable else None,
        latency_ms=latency,
        data_gb=draw(st.sampled_from([0.0, 0.5, 20.0, 300.0])),
        checkpointable=draw(st.booleans()),
    )


def _numbered(jobs: list[Job]) -> list[Job]:
    ordered = sorted(jobs, key=lambda j: j.submit_s)
    return [dataclasses.replace(j, job_id=f"h-{i}") for i, j in enumerate(ordered)]


@functools.cache
def _job_lists(
    places: tuple[str, ...], min_size: int, max_size: int, max_submit_h: float, max_run_h: float
) -> st.SearchStrategy[list[Job]]:
    one = _job(places, max_submit_h, max_run_h)
    return st.lists(one, min_size=min_size, max_size=max_size).map(_numbered)


def job_lists(
    places: Sequence[str],
    min_size: int = 1,
    max_size: int = 30,
    max_submit_h: float = 24.0,
    max_run_h: float = 6.0,
) -> st.SearchStrategy[list[Job]]:
    """Random job lists in submit order (ids unique), as the engine expects."""
    return _job_lists(tuple(places), min_size, max_size, max_submit_h, max_run_h)


@pytest.fixture(scope="session")
def random_jobs() -> Callable[..., st.SearchStrategy[list[Job]]]:
    return job_lists


def idle_offers(
    net: Network, sig: Signals, pools: list[int], price: str, hours: tuple[int, int] = (2, 20)
) -> Market:
    """A market with an idle-discount offer of all of each of ``pools`` at ``price`` CNY/SCU,
    in force over ``hours`` after the signals' start."""
    book = PriceBook(
        net.scenario,
        offers=OfferBook.of(
            [
                Offer(
                    id=f"o{p}",
                    provider=None,
                    center_id=net.center_ids[int(net.pool_center[p])],
                    model=net.pool_model[p],
                    units=int(net.pool_capacity[p]),
                    price_cny_per_scu=Decimal(price),
                    start=sig.start + timedelta(hours=hours[0]),
                    end=sig.start + timedelta(hours=hours[1]),
                    type=OfferType.IDLE_DISCOUNT,
                )
                for p in pools
            ]
        ),
    )
    return Market(prices=scu_prices(net, book, sig.start, sig.hours))


@pytest.fixture(scope="session")
def offers() -> Callable[..., Market]:
    """:func:`idle_offers`."""
    return idle_offers


# --------------------------------------------------------------------------- invariants


def runs_of(out: Outcome) -> list[tuple[int, int, float, float]]:
    """Every run as ``(job, pool, start, end)``: runs migrated away from, then last runs.

    ``end`` is ``inf`` for a run still going at the horizon.
    """
    runs = [
        (int(j), int(p), float(s), float(e))
        for j, p, s, e in zip(
            out.seg_job, out.seg_pool, out.seg_start_s, out.seg_end_s, strict=True
        )
    ]
    for j in np.flatnonzero(~np.isnan(out.start_s)):
        end = float(out.end_s[j]) if not np.isnan(out.end_s[j]) else np.inf
        runs.append((int(j), int(out.pool[j]), float(out.start_s[j]), end))
    return runs


def assert_outcome_valid(net: Network, jobs: Sequence[Job], out: Outcome) -> None:
    """Hard invariants every policy's simulated outcome must satisfy."""
    n = len(jobs)
    for arr in (out.pool, out.release_s, out.first_start_s, out.start_s, out.end_s):
        assert arr.shape == (n,)
    assert out.latency_ms.shape == (n,)
    eps = 1e-6
    runs = runs_of(out)
    pools_of: dict[int, set[int]] = {}
    for j, p, _, _ in runs:
        pools_of.setdefault(j, set()).add(p)

    for i, job in enumerate(jobs):
        p = int(out.pool[i])
        info = net.job_class(job)
        if p < 0:
            # rejected only when there is no feasible pool at all, and never started
            assert info.pools.size == 0, f"job {i} rejected although feasible pools exist"
            assert np.isnan(out.first_start_s[i])
            assert np.isnan(out.end_s[i])
            assert i not in pools_of
            continue
        feasible = set(info.pools.tolist())
        for q in pools_of.get(i, set()) | {p}:
            assert q in feasible, f"job {i} ran on pool {q} outside its feasible set"
            # compatibility
            speed = net.pool_speed[q, PRECISION_INDEX[job.precision]]
            assert speed > 0, f"job {i} ({job.precision}) on pool {q} that cannot run it"
            if job.precision is Precision.CPU:
                assert net.pool_is_cpu[q], f"CPU job {i} on accelerator pool {q}"
            else:
                assert not net.pool_is_cpu[q]
                assert net.pool_stack[q] in job.stacks, f"job {i} on stack {net.pool_stack[q]}"
                if job.accelerator != ANY_ACCELERATOR:
                    assert net.pool_model[q] == job.accelerator
            assert job.demand_units <= net.pool_capacity[q]
            # latency, from the job's origin to every center it runs in
            lat_q = float(net.latency_ms[net.place(job.origin), net.pool_center[q]])
            bound = job.effective_latency_ms
            if bound is not None:
                assert lat_q <= bound + 1e-9, f"job {i} latency {lat_q} > bound {bound}"
        lat = float(out.latency_ms[i])
        assert lat == pytest.approx(net.latency_ms[net.place(job.origin), net.pool_center[p]])
        if job.effective_latency_ms is not None:
            assert lat <= job.effective_latency_ms + 1e-9
        # time order: never before submission, never before release
        assert out.release_s[i] >= job.submit_s - eps
        first = out.first_start_s[i]
        if not np.isnan(first):
            assert first >= job.submit_s - eps, f"job {i} started before it was submitted"
            assert first >= out.release_s[i] - eps
            assert first <= out.horizon_s + eps
        else:
            assert np.isnan(out.start_s[i])
        if not np.isnan(out.start_s[i]):
            assert out.start_s[i] >= first - eps
        if not np.isnan(out.end_s[i]):
            assert not np.isnan(out.start_s[i])
            assert out.end_s[i] <= out.horizon_s + eps
            if out.migrations[i] == 0:
                speed = net.pool_speed[p, PRECISION_INDEX[job.precision]]
                runtime = job.work_scu / (job.demand_units * speed) * 3600.0
                took = out.end_s[i] - out.start_s[i]
                assert took == pytest.approx(runtime, rel=1e-9, abs=1e-6)
    assert int(out.migrations.sum()) == len(out.seg_job)

    # work is conserved across migrations: a completed job did exactly its work
    done: dict[int, float] = {}
    for j, p, start, end in runs:
        speed = net.pool_speed[p, PRECISION_INDEX[jobs[j].precision]]
        done[j] = done.get(j, 0.0) + (end - start) / 3600.0 * speed * jobs[j].demand_units
    for j in np.flatnonzero(~np.isnan(out.end_s)):
        assert done[int(j)] == pytest.approx(jobs[int(j)].work_scu, rel=1e-6), f"job {j} work"

    # capacity at every instant, per pool: sweep start (+units) and end (-units) events of every
    # run; at equal times ends come first (a finishing job frees its units for one starting then)
    by_pool: dict[int, list[tuple[float, int, int]]] = {}
    for j, p, start, end in runs:
        assert end >= start - eps
        u = jobs[j].demand_units
        by_pool.setdefault(p, []).extend([(start, 1, u), (end, 0, -u)])
    for p, events in by_pool.items():
        events.sort()
        running = 0
        cap = int(net.pool_capacity[p])
        for t, _, du in events:
            running += du
            assert running <= cap, f"pool {p} over capacity at t={t}: {running} > {cap}"
    # a job runs in one place at a time
    by_job: dict[int, list[tuple[float, float]]] = {}
    for j, _, start, end in runs:
        by_job.setdefault(j, []).append((start, end))
    for j, spans in by_job.items():
        spans.sort()
        for (_, e0), (s1, _) in itertools.pairwise(spans):
            assert s1 >= e0 - eps, f"job {j} runs twice at once"
    assert_starts_within_the_rule(net, jobs, out)


def expired_jobs(out: Outcome) -> NDArray[np.int64]:
    """The jobs that expired under the deferral rule: failed on a pool (never started)."""
    job, _, _, to, pool = out.events.columns()
    return np.unique(job[(to == STATE_CODE[JobState.FAILED]) & (pool >= 0)])


def assert_starts_within_the_rule(net: Network, jobs: Sequence[Job], out: Outcome) -> None:
    """The scenario's deferral rule: no job first starts later than its data's arrival at its
    first pool + the limit; an expired job never started, and expired at its limit."""
    job, at, frm, to, pool = out.events.columns()
    placed = (frm == STATE_CODE[JobState.PENDING]) & (to == STATE_CODE[JobState.SCHEDULED])
    first_pool = np.full(len(jobs), -1)
    first_pool[job[placed]] = pool[placed]
    limit = np.full(len(jobs), np.inf)
    for j, p in enumerate(first_pool.tolist()):
        if p >= 0:
            info = net.job_class(jobs[j])
            pos = int(np.flatnonzero(info.pools == p)[0])
            ready = jobs[j].submit_s + jobs[j].data_gb * float(info.transfer_s_per_gb[pos])
            limit[j] = ready + net.scenario.deferral.max_defer_s
    started = ~np.isnan(out.first_start_s)
    assert (out.first_start_s[started] <= limit[started]).all(), "a start past its limit"
    failed = (to == STATE_CODE[JobState.FAILED]) & (pool >= 0)
    assert not started[job[failed]].any(), "an expired job started"
    assert (at[failed] >= limit[job[failed]] - 1e-6).all(), "a job expired before its limit"


def assert_accounting(jobs: Sequence[Job], out: Outcome, report: PolicyReport) -> None:
    m = report.metrics
    n = len(jobs)
    completed = int((~np.isnan(out.end_s)).sum())
    rejected = int((out.pool < 0).sum())
    expired = int(expired_jobs(out).size)
    unfinished = int(((out.pool >= 0) & np.isnan(out.end_s)).sum()) - expired
    assert m["completed"] == completed
    assert m["rejected"] == rejected
    assert m["expired"] == expired
    assert m["unfinished"] == unfinished
    assert m["completed"] + m["rejected"] + m["expired"] + m["unfinished"] == n
    assert m["latency_violations"] == 0


def assert_same_outcome(a: Outcome, b: Outcome) -> None:
    names = ("pool", "release_s", "first_start_s", "start_s", "end_s", "latency_ms")
    names += ("transfer_cost_cny", "migrations", "seg_job", "seg_pool", "seg_start_s", "seg_end_s")
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        assert np.array_equal(x, y, equal_nan=True), f"outcome.{name} differs between runs"
    assert a.decisions == b.decisions
    assert a.horizon_s == b.horizon_s


@pytest.fixture(scope="session")
def outcome_runs() -> Callable[[Outcome], list[tuple[int, int, float, float]]]:
    return runs_of


@pytest.fixture(scope="session")
def check_outcome() -> Callable[[Network, Sequence[Job], Outcome], None]:
    return assert_outcome_valid


@pytest.fixture(scope="session")
def check_accounting() -> Callable[[Sequence[Job], Outcome, PolicyReport], None]:
    return assert_accounting


@pytest.fixture(scope="session")
def check_same_outcome() -> Callable[[Outcome, Outcome], None]:
    return assert_same_outcome


# --------------------------------------------------------------------------- Slurm testbed


#: Tenants with accounts of their own on the testbeds of the tests (the tenants the tests make).
TESTBED_TENANTS = ("alice", "bob", "consumer")


def open_to_jobs(path: Path, mode: int = 0o711) -> Path:
    """``path`` (made ``mode``) and the directories above it passable by other users: jobs on
    the Slurm testbed run as tenants' accounts, and pytest's directories are the owner's only."""
    path.chmod(mode)
    for p in path.parents:
        if not p.stat().st_mode & 0o001:
            p.chmod(p.stat().st_mode | 0o011)
    return path


@pytest.fixture
def shared_tmp(tmp_path: Path) -> Path:
    """``tmp_path``, where jobs running as any tenant's account may create files (sticky)."""
    return open_to_jobs(tmp_path, 0o1777)


@pytest.fixture
def testbed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short directory, reachable by jobs, for a Slurm testbed of the test's own: slurmd
    makes its job steps' Unix sockets under it (at most 107 characters to a path), and a
    test's own ``tmp_path`` (its name in it, and pytest-xdist's worker) is too deep. Put the
    testbed in ``testbed_dir / "tb"``: jobs running as any tenant's account may create files
    beside it (sticky, as :func:`shared_tmp`)."""
    return open_to_jobs(tmp_path_factory.mktemp("tb"), 0o1777)


@pytest.fixture(scope="session")
def slurm_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Two real Slurm clusters (zhongwei, beijing-yizhuang) for the whole session, with an
    account for each of :data:`TESTBED_TENANTS`.

    Needs Debian's slurm-wlm, slurmrestd and munge (``.ci/run`` installs them) and root. Missing
    pieces make the tests that use this fixture fail, never skip: in CI a skipped integration
    test is a failure.
    """
    root = open_to_jobs(tmp_path_factory.mktemp("testbed"))
    inventory = {c.id: dict(c.inventory) for c in load_scenario("china").centers}
    tb = testbed_up(root, inventory, ["zhongwei", "beijing-yizhuang"], tenants=TESTBED_TENANTS)
    try:
        yield tb
    finally:
        testbed_down(tb)
