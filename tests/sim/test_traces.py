"""Trace loaders: the three formats, their defaults and seeded rules, and error reporting."""

from __future__ import annotations

import bisect
import hashlib
import math
import tempfile
from itertools import accumulate
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanwang.core.hardware import Precision, speed_scu_per_hour
from suanwang.core.jobs import DEFAULT_TENANT, Job, JobKind, Priority
from suanwang.core.network import Network
from suanwang.scenarios.loader import load_scenario
from suanwang.sim.traces import (
    TRACE_FORMATS,
    TraceError,
    TraceProblem,
    TraceResult,
    load_trace,
    stable_uniform,
)
from suanwang.sim.workload import origin_sampler

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "traces"


@pytest.fixture(scope="module")
def net() -> Network:
    return Network(load_scenario("china"))


@pytest.fixture(scope="module")
def cpu_speed(net: Network) -> float:
    cpu = next(a for a in net.scenario.catalog.accelerators if a.is_cpu)
    return speed_scu_per_hour(cpu, Precision.CPU)


def by_id(result: TraceResult) -> dict[str, Job]:
    return {j.job_id: j for j in result.jobs}


def documented_origin(net: Network, *parts: object) -> str:
    """The origin rule exactly as docs/formats-traces.md states it."""
    key = "\x1f".join(str(p) for p in parts).encode()
    u = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
    places, p = origin_sampler(net)
    i = bisect.bisect_right(list(accumulate(float(x) for x in p)), u)
    return places[min(i, len(places) - 1)]


def problems_of(path: Path, fmt: str, net: Network) -> list[TraceProblem]:
    with pytest.raises(TraceError) as info:
        load_trace(path, fmt, net)
    return list(info.value.problems)


def where(problems: list[TraceProblem]) -> set[tuple[int, str]]:
    return {(p.line, p.field) for p in problems}


# --------------------------------------------------------------------------- suanwang


def test_suanwang_valid(net: Network, cpu_speed: float) -> None:
    res = load_trace(FIXTURES / "suanwang_valid.csv", "suanwang", net, seed=3)
    assert res.rows == 5 and res.skipped == {}
    assert [j.job_id for j in res.jobs] == ["job-3", "etl-2", "ft-1", "srv-3", "sim-4"]
    assert [j.submit_s for j in res.jobs] == [0.0, 100.0, 600.0, 1600.0, 2600.0]
    jobs = by_id(res)

    ft = jobs["ft-1"]
    assert (ft.kind, ft.origin, ft.cards, ft.cpus, ft.mem_gb) == (
        JobKind.FINETUNE,
        "beijing",
        4,
        32,
        128.0,
    )
    assert ft.accelerator == "ascend-910b" and ft.stacks == {"cann", "cuda"}
    assert ft.work_scu == pytest.approx(8.0)  # 2 h x 4 reference cards
    assert (ft.deadline_s, ft.data_gb, ft.checkpointable) == (86400.0, 50.0, True)

    d = jobs["job-3"]  # every default
    assert (d.kind, d.cards, d.cpus, d.mem_gb, d.accelerator) == (
        JobKind.TRAINING,
        1,
        8,
        32.0,
        "any",
    )
    assert d.stacks == {"cuda"} and d.work_scu == pytest.approx(1.0)
    assert (d.deadline_s, d.data_gb, d.checkpointable) == (None, 0.0, False)
    assert d.origin == documented_origin(net, "suanwang", "origin", 3, "job-3")

    etl = jobs["etl-2"]  # CPU-only
    assert (etl.kind, etl.cards, etl.cpus, etl.mem_gb) == (JobKind.ANALYTICS, 0, 64, 256.0)
    assert etl.stacks == {"cpu"}
    assert etl.work_scu == pytest.approx(64 * cpu_speed)

    srv = jobs["srv-3"]  # named model, stacks default to its stack
    assert srv.kind is JobKind.INFERENCE and srv.stacks == {"cuda"} and srv.cpus == 16
    assert srv.work_scu == pytest.approx(1.0) and srv.checkpointable

    sim = jobs["sim-4"]
    assert sim.stacks == {"dtk"} and sim.kind is JobKind.HPC
    assert sim.work_scu == pytest.approx(80.0) and sim.data_gb == 12.5
    for job in res.jobs:
        net.check_job(job)


def test_suanwang_minimal_header_and_blank_line(net: Network) -> None:
    res = load_trace(FIXTURES / "suanwang_minimal.csv", "suanwang", net)
    assert res.rows == 3
    assert [(j.job_id, j.submit_s) for j in res.jobs] == [
        ("job-5", 0.0),
        ("job-3", 3600.0),
        ("job-2", 7200.0),
    ]
    assert [j.work_scu for j in res.jobs] == pytest.approx([60 / 3600, 0.5, 1.0])


def test_suanwang_malformed(net: Network) -> None:
    problems = problems_of(FIXTURES / "suanwang_bad.csv", "suanwang", net)
    assert where(problems) == {
        (3, "duration_s"),
        (4, "kind"),
        (5, "origin"),
        (6, "job_id"),
        (7, "gpus"),
        (8, "stacks"),
        (9, "checkpointable"),
        (10, "duration_s"),
        (11, "accelerator"),
        (12, "submit_time_s"),
        (12, "deadline_s"),
        (13, "row"),
    }
    text = {(p.line, p.field): p.message for p in problems}
    assert "'abc'" in text[3, "duration_s"]
    assert "'teaching'" in text[4, "kind"]
    assert "'atlantis'" in text[5, "origin"]
    assert "'ok-1'" in text[6, "job_id"] and "line 2" in text[6, "job_id"]
    assert "rocm" in text[8, "stacks"] and "cuda" not in text[8, "stacks"].split("(")[0]
    assert "'tpu-v5'" in text[11, "accelerator"]
    path = str(FIXTURES / "suanwang_bad.csv")
    assert str(problems[0]) == f"{path}:3: duration_s: not a number: 'abc'"


def test_suanwang_header_problems(net: Network) -> None:
    problems = problems_of(FIXTURES / "suanwang_bad_header.csv", "suanwang", net)
    assert where(problems) == {(1, "urgency"), (1, "duration_s")}
    msg = {p.field: p.message for p in problems}
    assert "unknown column" in msg["urgency"]
    assert "required column" in msg["duration_s"]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("a,0,3600,0,0", "cpus"),  # CPU-only job without cores
        ("a,0,3600,1,cpu-node", "accelerator"),  # CPU model with cards
        ("a,0,3600,0,a100", "accelerator"),  # card model without cards
        ("a,0,nan,1,", "duration_s"),
        ("a,0,inf,1,", "duration_s"),
    ],
)
def test_suanwang_consistency(net: Network, tmp_path: Path, row: str, field: str) -> None:
    header = (
        "job_id,submit_time_s,duration_s,gpus,"
        + ("cpus" if field == "cpus" else "accelerator")
        + "\n"
    )
    path = tmp_path / "t.csv"
    path.write_text(header + row + "\n")
    assert where(problems_of(path, "suanwang", net)) == {(2, field)}


def test_suanwang_stacks_must_include_named_model(net: Network, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("submit_time_s,duration_s,accelerator,stacks\n0,60,ascend-910b,cuda\n")
    assert where(problems_of(path, "suanwang", net)) == {(2, "stacks")}


def test_suanwang_tenant_and_priority(net: Network, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "job_id,submit_time_s,duration_s,kind,tenant,priority\n"
        "a,0,60,training,nlp-lab,urgent\n"
        "b,0,60,inference, vision-lab ,Preemptible\n"
        "c,0,60,training,,\n"
        "d,0,60,inference,nlp-lab,\n"
    )
    jobs = by_id(load_trace(path, "suanwang", net))
    assert [(jobs[i].tenant, jobs[i].priority) for i in "abcd"] == [
        ("nlp-lab", Priority.URGENT),
        ("vision-lab", Priority.PREEMPTIBLE),
        (DEFAULT_TENANT, None),
        ("nlp-lab", None),
    ]
    # no class given: the default for the kind
    assert jobs["c"].priority_class is Priority.BATCH
    assert jobs["d"].priority_class is Priority.NORMAL


def test_suanwang_tenant_and_priority_columns_are_optional(net: Network) -> None:
    for job in load_trace(FIXTURES / "suanwang_valid.csv", "suanwang", net).jobs:
        assert job.tenant == DEFAULT_TENANT and job.priority is None


def test_suanwang_unknown_priority(net: Network, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "submit_time_s,duration_s,tenant,priority\n0,60,a,normal\n0,60,a,high\n0,60,b,\n"
    )
    problems = problems_of(path, "suanwang", net)
    assert where(problems) == {(3, "priority")}
    message = problems[0].message
    assert "'high'" in message
    assert all(p.value in message for p in Priority)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**7),
            st.integers(1, 10**6),
            st.integers(0, 16),
            st.sampled_from([k.value for k in JobKind]),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_suanwang_property(net: Network, rows: list[tuple[int, int, int, str]]) -> None:
    lines = ["submit_time_s,duration_s,gpus,kind"]
    lines += [f"{t},{d},{g},{k}" for t, d, g, k in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_text("\n".join(lines) + "\n")
        res = load_trace(path, "suanwang", net, seed=7)
    assert res.rows == len(rows) == len(res.jobs)
    submits = [j.submit_s for j in res.jobs]
    assert submits == sorted(submits) and submits[0] == 0.0
    t0 = min(t for t, *_ in rows)
    for i, (t, d, g, k) in enumerate(rows):
        job = by_id(res)[f"job-{i + 2}"]
        assert job.submit_s == t - t0 and job.kind is JobKind(k) and job.cards == g
        if g > 0:
            assert job.work_scu == pytest.approx(d / 3600 * g)
        assert job.work_scu > 0


# --------------------------------------------------------------------------- philly


def test_philly_valid(net: Network) -> None:
    res = load_trace(FIXTURES / "philly_valid.csv", "philly", net, seed=11)
    assert res.rows == 6 and res.skipped == {"zero_duration": 1} and len(res.jobs) == 5
    assert [(j.job_id, j.submit_s) for j in res.jobs] == [
        ("philly-3", 0.0),
        ("philly-2", 900.0),
        ("philly-6", 1800.0),
        ("philly-7", 2700.0),
        ("philly-5", 86400.0),
    ]
    jobs = by_id(res)
    assert jobs["philly-3"].kind is JobKind.INTERACTIVE  # 10 min
    assert jobs["philly-5"].kind is JobKind.TRAINING  # 8 cards
    assert jobs["philly-5"].work_scu == pytest.approx(16.0)
    assert jobs["philly-2"].cards == 4 and jobs["philly-2"].work_scu == pytest.approx(4.0)
    for job in res.jobs:
        assert job.stacks == {"cuda"} and job.accelerator == "any"
        assert job.origin == documented_origin(net, "philly", "vc", 11, job.labels["vc"])
        expected = (
            "training" if stable_uniform("philly", "kind", 11, job.job_id) < 0.5 else "finetune"
        )
        if job.job_id in ("philly-2", "philly-6", "philly-7"):
            assert job.kind == expected
    # the virtual cluster is the tenant (and still the vc label); Philly names no class
    assert {j.job_id: j.tenant for j in res.jobs} == {
        "philly-2": "vc-a",
        "philly-3": "vc-b",
        "philly-5": "vc-a",
        "philly-6": "vc-c",
        "philly-7": "vc-b",
    }
    assert all(j.tenant == j.labels["vc"] and j.priority is None for j in res.jobs)
    # one origin per virtual cluster
    assert jobs["philly-2"].origin == jobs["philly-5"].origin
    assert jobs["philly-3"].origin == jobs["philly-7"].origin


def test_philly_seeded_kinds_vary_with_seed(net: Network) -> None:
    kinds = {
        load_trace(FIXTURES / "philly_valid.csv", "philly", net, seed=s).jobs[1].kind
        for s in range(40)
    }
    assert kinds == {JobKind.TRAINING, JobKind.FINETUNE}


def test_philly_malformed(net: Network) -> None:
    problems = problems_of(FIXTURES / "philly_bad.csv", "philly", net)
    assert where(problems) == {
        (3, "timestamp"),
        (4, "num_gpus"),
        (5, "num_gpus"),
        (6, "duration"),
        (7, "cluster"),
        (8, "row"),
    }
    assert "'2017/10/03 09:15'" in next(p.message for p in problems if p.line == 3)


# --------------------------------------------------------------------------- alibaba


def test_alibaba_valid(net: Network, cpu_speed: float) -> None:
    res = load_trace(FIXTURES / "alibaba_valid.csv", "alibaba-gpu-2023", net, seed=5)
    assert res.rows == 9
    assert res.skipped == {"never_scheduled": 2, "non_positive_duration": 1}
    assert [(j.job_id, j.submit_s) for j in res.jobs] == [
        ("pod-d", 0.0),
        ("pod-a", 50.0),
        ("pod-b", 150.0),
        ("pod-f", 450.0),
        ("pod-g", 650.0),
        ("pod-h", 750.0),
    ]
    jobs = by_id(res)
    a = jobs["pod-a"]
    assert (a.kind, a.cards, a.cpus, a.mem_gb, a.stacks) == (
        JobKind.INFERENCE,
        1,
        12,
        16.0,
        frozenset({"cuda"}),
    )
    assert a.work_scu == pytest.approx(1.0)
    b = jobs["pod-b"]  # shared card (460 milli) counts as one card; runs scheduled->deletion
    assert (b.kind, b.cards, b.cpus, b.mem_gb) == (JobKind.TRAINING, 1, 6, 12.0)
    assert b.work_scu == pytest.approx(2.0)
    d = jobs["pod-d"]
    assert (d.kind, d.cards, d.cpus, d.stacks) == (JobKind.ANALYTICS, 0, 8, frozenset({"cpu"}))
    assert d.work_scu == pytest.approx(8 * cpu_speed)
    assert d.mem_gb == pytest.approx(30517 / 1024)
    f = jobs["pod-f"]
    assert (f.kind, f.cards, f.cpus) == (JobKind.TRAINING, 8, 64)
    assert f.work_scu == pytest.approx(35900 / 3600 * 8)
    assert jobs["pod-g"].kind is JobKind.INTERACTIVE
    assert jobs["pod-h"].cpus == 1  # ceil(100 milli), at least one core
    for job in res.jobs:
        assert job.origin == documented_origin(net, "alibaba-gpu-2023", "origin", 5, job.job_id)
        assert job.tenant == DEFAULT_TENANT and job.priority is None
        net.check_job(job)


def test_alibaba_malformed(net: Network) -> None:
    problems = problems_of(FIXTURES / "alibaba_bad.csv", "alibaba-gpu-2023", net)
    assert where(problems) == {
        (3, "qos"),
        (4, "memory_mib"),
        (5, "name"),
        (6, "gpu_milli"),
        (7, "creation_time"),
    }


def test_determinism(net: Network) -> None:
    for fmt, name in [
        ("suanwang", "suanwang_minimal.csv"),
        ("philly", "philly_valid.csv"),
        ("alibaba-gpu-2023", "alibaba_valid.csv"),
    ]:
        a = load_trace(FIXTURES / name, fmt, net, seed=42)
        b = load_trace(FIXTURES / name, fmt, net, seed=42)
        assert a == b
    origins = {
        tuple(
            j.origin
            for j in load_trace(
                FIXTURES / "alibaba_valid.csv", "alibaba-gpu-2023", net, seed=s
            ).jobs
        )
        for s in range(5)
    }
    assert len(origins) > 1


# --------------------------------------------------------------------------- files


def test_wrong_format_is_one_problem_with_hint(net: Network) -> None:
    problems = problems_of(FIXTURES / "alibaba_valid.csv", "philly", net)
    assert len(problems) == 1 and problems[0].line == 1
    assert "alibaba-gpu-2023" in problems[0].message


def test_unreadable_and_empty_files(net: Network, tmp_path: Path) -> None:
    assert where(problems_of(tmp_path / "missing.csv", "philly", net)) == {(0, "file")}
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert where(problems_of(empty, "philly", net)) == {(1, "header")}
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"submit_time_s,duration_s\n0,60\n0,6\xe90\n")
    assert where(problems_of(latin, "suanwang", net)) == {(3, "file")}
    header_only = tmp_path / "header.csv"
    header_only.write_text("submit_time_s,duration_s\n")
    assert load_trace(header_only, "suanwang", net) == TraceResult([], {}, 0)


def test_many_problems_are_capped_in_message(net: Network, tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text("submit_time_s,duration_s\n" + "x,60\n" * 150)
    with pytest.raises(TraceError) as info:
        load_trace(path, "suanwang", net)
    err = info.value
    assert isinstance(err, ValueError) and len(err.problems) == 150
    lines = str(err).splitlines()
    assert lines[0] == f"150 problems in trace {path}"
    assert lines[-1] == "... and 50 more" and len(lines) == 102
    assert [p.line for p in err.problems] == list(range(2, 152))


def test_unknown_format(net: Network) -> None:
    assert "philly" in TRACE_FORMATS
    with pytest.raises(ValueError, match="unknown trace format"):
        load_trace(FIXTURES / "philly_valid.csv", "helios", net)


def test_stable_uniform_range() -> None:
    us = [stable_uniform("x", i) for i in range(200)]
    assert all(0.0 <= u < 1.0 for u in us) and not math.isclose(min(us), max(us))
