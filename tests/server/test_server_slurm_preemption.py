"""Preemption on the real Slurm testbed (issue 14): a tenant under its quota takes back the
capacity another tenant borrowed, through the executors.

Tenant B (alice, almost no quota: her job runs on network-borrowed capacity) fills the only
pool of H20 cards of the testbed (zhongwei's GRES) with one job; tenant A (bob, within his
quota) then submits a job that needs all of it. A checkpointable victim gets ``SIGUSR1``
through slurmrestd, checkpoints and exits 85, goes back to the platform's queue as
``migrating``, waits while A's job runs, and resumes from its checkpoint (and once more for an
``urgent`` job, which its protection after a preemption does not hold off); another is
``scancel``-ed, fenced and run again from the start. At every round Slurm's own job list
shows at most one run of B's job alive, and the pool never runs two jobs. Billing: every run
of B is metered once; a checkpointed run is billed for the work it did, a run preempted
without a checkpoint not at all.

Runs on SQLite and PostgreSQL; the services' clock ticks with real time (:func:`pinned.
ticking`), so the runs last as long as they really did and their charges are not zero.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pinned import NOW, ticking
from slurm_platform import FINAL, Platform, checkpointing, events, get, ref_of, run_until
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.billing.pricing import book_for
from suanwang.billing.rating import PREEMPTED, UNBILLED_ENDS, Segment, rate_segment
from suanwang.core.jobs import JobKind
from suanwang.executors.base import CHECKPOINT_EXIT_CODE
from suanwang.scheduling.planner import SuanwangPolicy
from suanwang.server.database.models import JobRow, RunFence, UsageRecord
from suanwang.server.models.governance import load_governance
from suanwang.server.services.failover import CHECKPOINT_REQUESTED
from suanwang.testbed import slurm

CENTER, MODEL = "zhongwei", "h20"  # the testbed's only cluster with H20 cards
#: Slurm states of a run that may still have processes on the node
ALIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "REQUEUED",
         "SIGNALING", "RESIZING"}  # fmt: skip
BUSY = {"CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING"}


@dataclass
class Scene:
    """Alice and bob on the testbed under quotas (alice 1 SCU/h: she borrows; bob 500 SCU/h:
    his jobs have a claim), the services round by round; every job starts now (no deferral
    for price: the order alone decides)."""

    client: TestClient
    p: Platform
    tb: slurm.Testbed
    alice: Any
    bob: Any
    submit: Callable[..., dict[str, Any]]
    dir: Path

    @property
    def cards(self) -> int:
        """Every H20 card of the testbed: they are all on CENTER."""
        have = {c.center_id: c.gres.get(MODEL, 0) for c in self.tb.clusters}
        assert [c for c, n in have.items() if n] == [CENTER], have
        return have[CENTER]

    def job(self, who: Any, name: str, **kw: Any) -> str:
        """Submit a training job of every H20 card as ``who``."""
        resources = {"cpus": 2, "cards": self.cards, "accelerator": MODEL, "mem_gb": 1}
        spec = {"resources": resources, "stacks": ["cuda"], "kind": "training",
                "duration_s": 600, **kw}  # fmt: skip
        return str(self.submit(who, name=name, **spec)["id"])

    def state(self, who: Any, job: str) -> str:
        return str(get(self.client, who, job)["state"])

    def asked(self, job: str) -> list[dict[str, Any]]:
        """The checkpoint requests of alice's ``job``."""
        return [e["detail"] for e in events(self.client, self.alice, job)
                if e["detail"].get("event") == CHECKPOINT_REQUESTED]  # fmt: skip

    def until_ended(self, jobs: list[tuple[Any, str]], watch: SlurmWatch) -> None:
        run_until(self.p, lambda: all(self.state(w, j) in FINAL for w, j in jobs),
                  timeout=90, what="the jobs end", every=watch)  # fmt: skip
        assert [self.state(w, j) for w, j in jobs] == ["succeeded"] * len(jobs)

    def records(self, job_id: str) -> list[UsageRecord]:
        with self.p.sessions() as s:
            q = select(UsageRecord).where(UsageRecord.job_id == job_id).order_by(UsageRecord.seq)
            return list(s.scalars(q))

    def charge(self, run: tuple[dict[str, Any], dict[str, Any]], end: str) -> Decimal:
        """What a run is billed by the pure rating rules (0.00 for a run that ends unbilled)."""
        at = [datetime.fromisoformat(e["at"]) for e in run]
        seg = Segment(0, CENTER, MODEL, at[0], at[1], end, int(run[0]["id"]))
        book = book_for(self.p.live.net.scenario)
        line = rate_segment(book, seg, precision=JobKind.TRAINING.precision, units=self.cards)
        return line.amount_cny if end not in UNBILLED_ENDS else Decimal("0.00")


@pytest.fixture
def scene(
    app: FastAPI,
    client: TestClient,
    sessions: sessionmaker[Session],
    slurm_testbed: slurm.Testbed,
    alice: Any,
    bob: Any,
    operator: Any,
    submit: Callable[..., dict[str, Any]],
    shared_tmp: Path,
) -> Iterator[Scene]:
    tmp_path = shared_tmp  # the jobs, as their tenants' accounts, write their records here
    for who, quota in (("alice", 1), ("bob", 500)):
        body = {"cohort": f"c-{who}", "quota_scu_per_h": quota}
        r = client.put(f"/v1/quotas/{who}", json=body, headers=operator.headers)
        assert r.status_code == 200, r.text
    p = Platform(app, sessions, slurm_testbed, tmp_path, clock=ticking(NOW),
                 governance=load_governance, policy=SuanwangPolicy(max_defer_h=0))  # fmt: skip
    yield Scene(client, p, slurm_testbed, alice, bob, submit, tmp_path)
    p.close()


@dataclass
class SlurmWatch:
    """Slurm's own list of jobs (``scontrol show job``) at CENTER, sampled at every round:
    the most runs of the victim's job alive at once, and of the watched jobs on the pool."""

    cluster: slurm.Cluster
    victim: str
    others: list[str] = field(default_factory=list)
    most_alive: int = 0
    most_busy: int = 0
    samples: int = 0
    runs: dict[str, dict[str, str]] = field(default_factory=dict)  # Slurm job id -> fields

    def of(self, job_id: str) -> list[dict[str, str]]:
        """The runs of ``job_id`` (``sw-<id>``, ``sw-<id>.<attempt>...``) seen so far, oldest
        first."""
        mine = [(int(j), f) for j, f in self.runs.items() if _named(f, job_id)]
        return [f for _, f in sorted(mine, key=lambda jf: jf[0])]

    def __call__(self) -> None:
        for line in slurm.scontrol(self.cluster, "show", "job", "--oneliner").splitlines():
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            if any(_named(fields, j) for j in (self.victim, *self.others)):
                self.runs[fields["JobId"]] = fields
        states = [f["JobState"] for f in self.runs.values()]
        alive = sum(f["JobState"] in ALIVE for f in self.of(self.victim))
        self.most_alive = max(self.most_alive, alive)
        self.most_busy = max(self.most_busy, sum(s in BUSY for s in states))
        self.samples += 1


def _named(fields: dict[str, str], job_id: str) -> bool:
    return re.match(rf"sw-{job_id}(\.|$)", fields.get("JobName", "")) is not None


def _runs(evs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each run of a job from its events: (the event that saw it running, the one that
    ended it)."""
    out = []
    begin: dict[str, Any] | None = None
    for e in evs:
        if e["to_state"] == "running" and e["from_state"] != "running":
            begin = e
        elif begin is not None and e["from_state"] == "running" and e["to_state"] != "running":
            out.append((begin, e))
            begin = None
    return out


def _moves(evs: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(e["from_state"], e["to_state"]) for e in evs if e["from_state"] != e["to_state"]]


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _step(ckpt: Path) -> int:
    """The step of the job's last checkpoint (-1: none yet)."""
    try:
        return int((ckpt / "step").read_text())
    except (OSError, ValueError):
        return -1


# about Slurm, not the database: PostgreSQL only (the production one; it keeps CI short)
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_checkpointable_job_on_borrowed_slurm_capacity_is_checkpointed_and_resumes(
    scene: Scene,
) -> None:
    s, p, alice, bob = scene, scene.p, scene.alice, scene.bob
    markers, runs = s.dir / "markers", s.dir / "runs"
    victim = s.job(alice, "borrowed", command=None, checkpointable=True,
                   script=checkpointing(markers, 100, runs))  # fmt: skip
    watch = SlurmWatch(s.tb.cluster(CENTER), victim)
    ckpt = p.live.checkpoint_dir(victim)
    run_until(p, lambda: _step(ckpt) >= 0, what="alice's first checkpoint", every=watch)
    assert (s.state(alice, victim), get(s.client, alice, victim)["center_id"]) == (
        "running", CENTER)  # fmt: skip
    first_ref = ref_of(p.sessions, victim)

    claim = s.job(bob, "claim", command="echo bob on $SUANWANG_CENTER; sleep 2")
    watch.others.append(claim)
    p.round()  # bob's job is placed in this round, and alice's run asked to checkpoint
    watch()
    assert s.state(bob, claim) == "scheduled"
    request = {"event": CHECKPOINT_REQUESTED, "why": PREEMPTED}
    assert s.asked(victim) == [{**request, "by": claim, "attempt": 0}]
    # alice's job waits while bob's runs, then resumes; once it has checkpointed past where
    # it resumed (it handles the signal), an urgent job of bob's preempts it again: its
    # protection after a preemption does not hold against urgent work
    run_until(p, lambda: s.state(bob, claim) == "succeeded" and len(_lines(runs)) == 3
              and _step(ckpt) > int(_lines(runs)[2][2]) and s.state(alice, victim) == "running",
              timeout=120, what="alice's job resumes after bob's", every=watch)  # fmt: skip
    urgent = s.job(bob, "forecast", command="sleep 1", priority="urgent")
    watch.others.append(urgent)
    p.round()
    watch()
    assert s.state(bob, urgent) == "scheduled"
    assert s.asked(victim) == [{**request, "by": claim, "attempt": 0},
                               {**request, "by": urgent, "attempt": 1}]  # fmt: skip
    s.until_ended([(alice, victim), (bob, claim), (bob, urgent)], watch)

    # Slurm: alice's job ran three times, never two runs alive at once, nor two jobs on the
    # pool; each run of hers checkpointed (exit 85) but the last
    assert watch.samples > 3 and watch.most_alive == 1 and watch.most_busy == 1
    r1, r2, r3 = watch.of(victim)
    (rc,), (ru,) = watch.of(claim), watch.of(urgent)
    assert first_ref == f"{r1['JobId']}:{r1['JobName']}"
    exits = [(r["JobState"], r["ExitCode"]) for r in (r1, r2, r3, rc, ru)]
    ckpt_exit = ("FAILED", f"{CHECKPOINT_EXIT_CODE}:0")
    assert exits == [ckpt_exit, ckpt_exit] + [("COMPLETED", "0:0")] * 3
    assert r2["JobName"].startswith(f"sw-{victim}.1.resume-")
    assert r3["JobName"].startswith(f"sw-{victim}.2.resume-")
    # the pool passed from one run to the next (Slurm's times, whole seconds)
    order = [t for r in (r1, rc, r2, ru, r3) for t in (r["StartTime"], r["EndTime"])]
    assert order == sorted(order)
    # the job's own record of its runs: each resumed where the one before checkpointed
    lines = _lines(runs)
    ids = [r["JobId"] for r in (r1, r2, r3)]
    assert [(what, jid) for what, jid, _ in lines] == [
        ("start", ids[0]), ("checkpointed", ids[0]), ("start", ids[1]),
        ("checkpointed", ids[1]), ("start", ids[2]), ("finished", ids[2])]  # fmt: skip
    steps = [int(step) for _, _, step in lines]
    assert steps[0] == 0 and steps[1] == steps[2] and steps[3] == steps[4]
    assert 0 < steps[1] < steps[3] < 100 and steps[5] == 100
    assert markers.read_text().splitlines() == [victim]  # it ran to its end once
    logs = s.client.get(f"/v1/jobs/{victim}/logs", headers=alice.headers).text
    assert f"start at {steps[4]} on {CENTER}" in logs and "finished" in logs

    # the platform: running -> migrating (checkpointed) -> scheduled (resumed) each time, a
    # new run handed over only once the one before had ended; nothing fenced
    evs = events(s.client, alice, victim)
    again = [("running", "migrating"), ("migrating", "scheduled"), ("scheduled", "running")]
    assert _moves(evs) == [(None, "pending"), ("pending", "scheduled"), ("scheduled", "running"),
                           *again, *again, ("running", "succeeded")]  # fmt: skip
    left = [e["detail"] for e in evs if e["to_state"] == "migrating"]
    assert [d["exit_code"] for d in left] == [CHECKPOINT_EXIT_CODE] * 2
    assert all(d["checkpoint_bytes"] > 0 for d in left)
    with p.sessions() as db:
        assert db.get_one(JobRow, victim).attempt == 2
        assert db.scalars(select(RunFence).where(RunFence.job_id == victim)).all() == []

    # billing: each run metered once and billed, a checkpointed run for the work it did (to
    # its checkpoint), the last for the rest; the waits between them are not billed
    three = _runs(evs)
    recs = s.records(victim)
    assert [(r.seq, r.end_state, r.billable) for r in recs] == [
        (0, "migrating", True), (1, "migrating", True), (2, "succeeded", True)]  # fmt: skip
    assert [r.run_event_id for r in recs] == [begin["id"] for begin, _ in three]
    assert all(a.ended_at <= b.started_at for a, b in pairwise(recs))
    assert all(r.scu > 0 for r in recs)
    expected = [s.charge(run, r.end_state) for run, r in zip(three, recs, strict=True)]
    assert [r.amount_cny for r in recs] == expected
    assert Decimal(get(s.client, alice, victim)["charge_cny"]) == sum(expected)
    assert [len(s.records(j)) for j in (claim, urgent)] == [1, 1]


#: A job that cannot checkpoint, one process (a signal from Slurm stops all of it at once):
#: its first run would outlast the test unless stopped, a run after it takes 4 s.
STARTS_OVER = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import os, time
    jid = os.environ["SLURM_JOB_ID"]
    with open(RUNS, "a") as f:
        f.write(f"start {jid}\\n")
    first = sum(line.startswith("start") for line in open(RUNS)) == 1
    time.sleep(600 if first else 4)
    with open(RUNS, "a") as f:
        f.write(f"finished {jid}\\n")
    with open(MARKERS, "a") as f:
        f.write(os.environ["SUANWANG_JOB_ID"] + "\\n")
    """
)


def test_a_job_that_cannot_checkpoint_is_cancelled_in_slurm_and_runs_again_from_the_start(
    scene: Scene,
) -> None:
    s, p, alice, bob = scene, scene.p, scene.alice, scene.bob
    markers, runs = s.dir / "markers", s.dir / "runs"
    script = STARTS_OVER.replace("RUNS", repr(str(runs))).replace("MARKERS", repr(str(markers)))
    victim = s.job(alice, "borrowed", command=None, script=script)
    watch = SlurmWatch(s.tb.cluster(CENTER), victim)
    run_until(p, lambda: runs.exists() and s.state(alice, victim) == "running",
              what="alice's job runs", every=watch)  # fmt: skip
    first_ref = ref_of(p.sessions, victim)
    assert first_ref is not None

    claim = s.job(bob, "claim", command="sleep 2")
    watch.others.append(claim)
    p.dispatcher.run_once()  # the preemption: stopped at once, fenced, back to the queue
    assert s.state(bob, claim) == "scheduled"
    got = get(s.client, alice, victim)
    assert (got["state"], got["center_id"]) == ("migrating", None)
    with p.sessions() as db:
        assert db.get_one(JobRow, victim).attempt == 1
        (fence,) = db.scalars(select(RunFence).where(RunFence.job_id == victim)).all()
        assert (fence.center_id, fence.executor_ref) == (CENTER, first_ref)
        assert fence.reason == f"preempted by {claim}"
    ex = p.executors[CENTER]
    run_until(p, lambda: ex.poll([first_ref])[first_ref].state.value == "cancelled",
              what="scancel reached Slurm", every=watch)  # fmt: skip
    s.until_ended([(alice, victim), (bob, claim)], watch)

    assert watch.most_alive == 1 and watch.most_busy == 1
    r1, r2 = watch.of(victim)
    (rc,) = watch.of(claim)
    assert (r1["JobState"], r2["JobState"]) == ("CANCELLED", "COMPLETED")
    assert r2["JobName"] == f"sw-{victim}.1"  # the next attempt, not a resume
    order = [t for r in (r1, rc, r2) for t in (r["StartTime"], r["EndTime"])]
    assert order == sorted(order)
    ids = [r["JobId"] for r in (r1, r2)]
    assert _lines(runs) == [["start", ids[0]], ["start", ids[1]], ["finished", ids[1]]]
    assert markers.read_text().splitlines() == [victim]

    evs = events(s.client, alice, victim)
    assert _moves(evs) == [(None, "pending"), ("pending", "scheduled"), ("scheduled", "running"),
                           ("running", "migrating"), ("migrating", "scheduled"),
                           ("scheduled", "running"), ("running", "succeeded")]  # fmt: skip
    stopped = next(e for e in evs if e["to_state"] == "migrating")["detail"]
    assert (stopped["event"], stopped["by"], stopped["attempt"]) == (PREEMPTED, claim, 0)
    assert s.asked(victim) == []
    # the fence is kept (failover cancels its run again, in case it were still there)
    fenced = [e["detail"] for e in evs if e["detail"].get("event") == "fenced"]
    assert [(d["ref"], d["reason"]) for d in fenced] == [
        (first_ref, f"stale run cancelled: preempted by {claim}")]  # fmt: skip
    with p.sessions() as db:
        assert db.get_one(RunFence, fence.id).fenced_at is not None

    # billing: the stopped run is metered, not billed; the tenant pays for the run that did it
    two = _runs(evs)
    recs = s.records(victim)
    assert [(r.seq, r.end_state, r.billable) for r in recs] == [
        (0, PREEMPTED, False), (1, "succeeded", True)]  # fmt: skip
    assert recs[0].amount_cny == 0 and recs[0].scu > 0
    expected = s.charge(two[1], "succeeded")
    assert recs[1].amount_cny == expected
    assert Decimal(get(s.client, alice, victim)["charge_cny"]) == expected
