"""Metering finds a job's runs in its events by the rule the simulator uses too: placement,
chip and market from the event that scheduled each run, hand-over runs, notes that are not
transitions, and what a cancelled job's stopped run reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from suanwang.billing.rating import UNBILLED_ENDS
from suanwang.server.database.models import JobEvent, JobRow
from suanwang.server.models.billing.metering import segments

T0 = datetime(2025, 7, 1, 6, 0, tzinfo=UTC)


def _events(*steps: tuple[int, str | None, str, dict[str, Any]]) -> list[JobEvent]:
    return [
        JobEvent(
            id=i + 1, job_id="j", at=T0 + timedelta(minutes=m), from_state=f, to_state=t, detail=d
        )
        for i, (m, f, t, d) in enumerate(steps)
    ]


def _job() -> JobRow:
    spec = {"resources": {"count": 8, "cpus": 8}, "kind": "training"}
    return JobRow(id="j", tenant_id="t", name="j", spec=spec, center_id="z2", pool_model="h800")


def test_runs_are_metered_where_their_placement_put_them() -> None:
    offer = {"source": "offer", "price_cny_per_scu": 1.0, "posted_cny_per_scu": 4.0}
    events = _events(
        (0, None, "pending", {}),
        (1, "pending", "scheduled", {"center": "z1", "pool": "a100", "market": offer}),
        (2, "scheduled", "scheduled", {"event": "fenced"}),  # a note, not a transition
        (3, "scheduled", "running", {}),
        (10, "running", "running", {"event": "checkpoint_requested"}),
        (20, "running", "migrating", {"usage": {"tokens": 7}}),
        (21, "migrating", "scheduled", {"center": "z2", "pool": "h800",
                                        "start_at": (T0 + timedelta(minutes=30)).isoformat()}),
        (40, "scheduled", "succeeded", {}),  # ended between two polls: from its hand-over
    )  # fmt: skip
    first, second = segments(job=_job(), events=events)
    assert (first.center_id, first.model, first.market, first.tokens) == ("z1", "a100", "offer", 7)
    assert first.started_at == T0 + timedelta(minutes=3)
    assert first.ended_at == T0 + timedelta(minutes=20)
    assert first.run_event_id == 4 and first.end_state == "migrating"
    assert (second.center_id, second.model, second.market) == ("z2", "h800", None)
    # from the later of its placement (21 min) and its planned start (30 min)
    assert second.started_at == T0 + timedelta(minutes=30)
    assert second.ended_at == T0 + timedelta(minutes=40) and second.run_event_id == 8


def test_a_cancelled_run_keeps_what_it_reported_once_stopped_and_an_open_run_waits() -> None:
    events = _events(
        (0, None, "pending", {}),
        (1, "pending", "scheduled", {"center": "z1", "pool": "a100"}),
        (2, "scheduled", "running", {}),
        (5, "running", "cancelled", {}),
        (6, "cancelled", "cancelled", {"event": "run_stopped", "usage": {"tokens": 12}}),
    )  # fmt: skip
    (run,) = segments(job=_job(), events=events)
    assert run.end_state == "cancelled" and run.tokens == 12
    assert segments(job=_job(), events=events[:3]) == []  # still running: not metered yet
    never = _events((0, None, "pending", {}), (1, "pending", "scheduled", {"center": "z1"}),
                    (2, "scheduled", "cancelled", {}))  # fmt: skip
    assert segments(job=_job(), events=never) == []  # cancelled before it ran: no run


def test_a_run_preempted_without_a_checkpoint_is_metered_but_not_billed() -> None:
    """Its work is lost and done again (docs/governance.md): the tenant pays for the run that
    finishes it, and a checkpointed preemption (migrating, no such event) is billed as usual."""
    events = _events(
        (0, None, "pending", {}),
        (1, "pending", "scheduled", {"center": "z1", "pool": "a100"}),
        (2, "scheduled", "running", {}),
        (30, "running", "migrating", {"event": "preempted", "by": "other-job", "attempt": 0}),
        (31, "migrating", "scheduled", {"center": "z2", "pool": "h800"}),
        (32, "scheduled", "running", {}),
        (90, "running", "succeeded", {}),
    )  # fmt: skip
    lost, done = segments(job=_job(), events=events)
    assert lost.end_state == "preempted" and lost.end_state in UNBILLED_ENDS
    assert lost.ended_at - lost.started_at == timedelta(minutes=28)  # metered all the same
    assert done.end_state == "succeeded" and done.end_state not in UNBILLED_ENDS
