"""LocalExecutor with a lease (an agent's executor): a run stops by itself once no poll has
seen it alive for the lease, and is reported lost; runs polled in time go on (real processes)."""

from __future__ import annotations

import time
from pathlib import Path

from test_local_executor import CENTER, job, status, wait_until, work

from suanwang.core.lifecycle import JobState
from suanwang.executors import LocalExecutor
from suanwang.executors.base import CENTER as CAUSE_CENTER
from suanwang.executors.base import LEASE
from suanwang.executors.local.rundir import status_from


def test_a_run_goes_on_while_polled_and_stops_by_itself_once_its_lease_runs_out(
    tmp_path: Path,
) -> None:
    ex = LocalExecutor(tmp_path, CENTER, cpus=4, cards=0, lease_s=2.0, kill_grace_s=1.0)
    ref = ex.submit(job("leased", "echo started; sleep 30; echo finished > done"))
    ended = time.monotonic() + 5  # longer than the lease: polls keep it alive
    while time.monotonic() < ended:
        assert status(ex, ref).state is JobState.RUNNING
        time.sleep(0.5)
    # no poll now (the agent lost contact): the watchdog stops the run after the lease
    run = tmp_path / CENTER / "leased"
    wait_until(lambda: (run / "fenced").exists(), 10, "the watchdog to stop the run")
    wait_until(lambda: status(ex, ref).state is JobState.LOST, 10, "the run to be lost")
    st = status(ex, ref)
    assert "stopped by its lease" in st.reason and st.exit_code is None
    assert st.cause == LEASE  # said, not read from the reason (issue 16)
    assert status(ex, ref).cause == LEASE  # and kept with its recorded end
    assert ex.recorded_exit(ref) is None  # it did not end by itself
    assert not (work(tmp_path, "leased") / "done").exists()
    assert "no word from the platform" in ex.logs(ref)


def test_without_a_lease_runs_never_stop_by_themselves(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path, CENTER, cpus=4, cards=0, kill_grace_s=1.0)
    ref = ex.submit(job("free", "sleep 4; echo finished"))
    time.sleep(3.5)  # unpolled for longer than any lease of the other test
    wait_until(lambda: status(ex, ref).state is JobState.SUCCEEDED, 10, "the run to end")
    assert not (tmp_path / CENTER / "free" / "fenced").exists()
    assert "no word from the platform" not in ex.logs(ref)


def test_a_run_the_executor_does_not_know_is_lost_for_the_centers_cause(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path, CENTER, cpus=4, cards=0, lease_s=2.0)
    st = status(ex, f"{CENTER}/no-such-run")
    assert (st.state, st.cause) == (JobState.LOST, CAUSE_CENTER)


def test_an_end_recorded_before_causes_has_none() -> None:
    """A run's final.json written before causes has no ``cause``: not said (the control plane
    then keeps its old text rule), never a guess."""
    why = "stopped by its lease: no poll saw it alive for longer than the lease"
    final = {
        "state": "lost",
        "exit_code": None,
        "started_at": None,
        "ended_at": None,
        "reason": why,
    }
    assert status_from("c/r", final).cause is None
    assert status_from("c/r", {**final, "cause": LEASE}).cause == LEASE
