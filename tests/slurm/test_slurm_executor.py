"""SlurmExecutor against real Slurm clusters (the testbed): submit, poll, cancel, logs, resume."""

from __future__ import annotations

import dataclasses
import os
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from suanwang.core.lifecycle import JobState
from suanwang.executors import (
    CHECKPOINT_EXIT_CODE,
    Executor,
    ExecutorError,
    ExecutorStatus,
    RunUsage,
    Submission,
)
from suanwang.executors.base import CENTER, LEASE, PREEMPTED
from suanwang.executors.slurm import (
    LEASE_EXIT_CODE,
    SlurmExecutor,
    _parse_gres,
    run_name,
    status_of,
)
from suanwang.testbed.slurm import Cluster, Testbed


def wait_for(
    ex: SlurmExecutor, ref: str, done: Callable[[JobState], bool], timeout: float = 30.0
) -> JobState:
    deadline = time.monotonic() + timeout
    while True:
        state = ex.poll([ref])[ref].state
        if done(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"job {ref} still {state} after {timeout} s")
        time.sleep(0.2)


def final(ex: SlurmExecutor, ref: str) -> JobState:
    return wait_for(ex, ref, lambda s: s.is_terminal or s is JobState.MIGRATING)


def executor_for(tb: Testbed, c: Cluster, **kw: Any) -> SlurmExecutor:
    """The cluster's executor as the testbed's platform file has it (tenants' accounts)."""
    return SlurmExecutor(c.center_id, c.url, c.token_file, tb.user, c.jobs_dir,
                         partition="suanwang", accounts=tb.accounts,
                         account_tokens=c.tokens_dir, **kw)  # fmt: skip


@pytest.fixture
def ex(slurm_testbed: Testbed) -> Iterator[SlurmExecutor]:
    e = executor_for(slurm_testbed, slurm_testbed.clusters[0])
    yield e
    e.close()


def sub(command: str | None = None, *, script: str | None = None, **kw: object) -> Submission:
    """A submission of tenant alice (unless ``tenant=`` says otherwise)."""
    kw.setdefault("tenant", "alice")
    return Submission(
        job_id=f"t-{uuid.uuid4().hex[:10]}", name="t", command=command, script=script, **kw
    )  # type: ignore[arg-type]


def test_is_an_executor(ex: SlurmExecutor) -> None:
    assert isinstance(ex, Executor)


def test_job_runs_with_cards_and_its_output_and_exit_code_come_back(ex: SlurmExecutor) -> None:
    s = sub("echo out $SUANWANG_JOB_ID cards=$SUANWANG_CARDS; echo err >&2; exit 3",
            cpus=2, cards=2, accelerator="h800", mem_gb=1.0)  # fmt: skip
    ref = ex.submit(s)
    assert final(ex, ref) is JobState.FAILED
    status = ex.poll([ref])[ref]
    assert status.exit_code == 3
    assert status.started_at is not None and status.ended_at is not None
    assert "NonZeroExitCode" in status.reason
    logs = ex.logs(ref)
    assert f"out {s.job_id} cards=2" in logs and "err" in logs
    assert ex.logs(ref, tail_bytes=4) == logs[-4:]


def test_success_and_gres_accounting(ex: SlurmExecutor) -> None:
    ref = ex.submit(sub("sleep 2", cards=3, accelerator="ascend-910b"))
    wait_for(ex, ref, lambda s: s is JobState.RUNNING)
    cap = ex.capacity()
    assert cap.cards_by_model["ascend-910b"] == 8
    assert cap.used_cards >= 3
    assert final(ex, ref) is JobState.SUCCEEDED
    assert ex.poll([ref])[ref].exit_code == 0


def test_tokens_a_job_reports_are_collected_from_its_run_dir(ex: SlurmExecutor) -> None:
    report = """echo '{"tokens": %d}' >> "$SUANWANG_USAGE_FILE"; """
    ref = ex.submit(sub(report % 300 + report % 42))
    assert final(ex, ref) is JobState.SUCCEEDED
    assert ex.reported_usage(ref) == RunUsage(342)
    _, name = ref.split(":", 1)
    assert (ex.output_dir / name / "usage.jsonl").is_file()  # next to its recorded exit
    assert ex.reported_usage("999999:sw-nope") == RunUsage()
    assert ex.reported_usage("not-a-ref") == RunUsage()


def test_submit_is_idempotent_per_job_and_attempt(ex: SlurmExecutor) -> None:
    s = sub("true")
    first = ex.submit(s)
    assert ex.submit(s) == first
    retry = dataclasses.replace(s, attempt=1)  # a new attempt after failover: a new run
    second = ex.submit(retry)
    assert second != first
    assert ex.submit(retry) == second


def test_unknown_refs_are_lost_and_cancel_is_idempotent(ex: SlurmExecutor) -> None:
    assert ex.poll(["999999"])["999999"].state is JobState.LOST
    assert ex.poll(["999999"])["999999"].cause == CENTER  # counted against the job
    assert ex.poll(["not-a-slurm-id"])["not-a-slurm-id"].state is JobState.LOST
    ref = ex.submit(sub("sleep 60"))
    wait_for(ex, ref, lambda s: s is JobState.RUNNING)
    ex.cancel(ref)
    assert final(ex, ref) is JobState.CANCELLED
    ex.cancel(ref)  # a finished job: nothing happens
    ex.cancel("999999")


def test_jobs_bigger_than_the_cluster_are_refused(ex: SlurmExecutor) -> None:
    with pytest.raises(ExecutorError, match="slurm:zhongwei"):
        ex.submit(sub("true", cards=9, accelerator="h800"))
    with pytest.raises(ExecutorError):
        ex.submit(sub("true", cards=1, accelerator="h100"))  # zhongwei has no H100


CHECKPOINTING = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import os, signal, sys, time
    ckpt = os.environ["SUANWANG_CHECKPOINT_DIR"]
    step = 0
    resume = os.environ.get("SUANWANG_RESUME_FROM")
    if resume:
        step = int(open(os.path.join(resume, "step")).read())
        print("resumed at", step, flush=True)
    def save(*_):
        open(os.path.join(ckpt, "step"), "w").write(str(step))
        sys.exit(85)
    signal.signal(signal.SIGUSR1, save)
    while step < 1000:
        step += 1
        time.sleep(0.05)
        if resume and step > int(open(os.path.join(resume, "step")).read()) + 3:
            print("done from", resume, flush=True)
            sys.exit(0)
    """
)


def test_checkpoint_and_resume(ex: SlurmExecutor) -> None:
    s = sub(script=CHECKPOINTING)
    ref = ex.submit(s)
    wait_for(ex, ref, lambda st: st is JobState.RUNNING)
    time.sleep(1.0)
    ckpt = ex.checkpoint(ref)
    assert ckpt is not None
    assert final(ex, ref) is JobState.MIGRATING
    assert ex.poll([ref])[ref].exit_code == CHECKPOINT_EXIT_CODE
    assert int((Path(ckpt) / "step").read_text()) > 0
    assert ex.checkpoint(ref) == ckpt  # idempotent once checkpointed
    new = ex.resume(s, ckpt)
    assert new != ref and ex.resume(s, ckpt) == new
    assert final(ex, new) is JobState.SUCCEEDED
    assert f"done from {ckpt}" in ex.logs(new)


def test_plain_command_passes_the_checkpoint_signal_on(ex: SlurmExecutor) -> None:
    cmd = (
        "python3 -c 'import signal,sys,time; "
        "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(85)); time.sleep(60)'"
    )
    ref = ex.submit(sub(cmd))
    wait_for(ex, ref, lambda st: st is JobState.RUNNING)
    time.sleep(0.5)
    ex.checkpoint(ref)
    assert final(ex, ref) is JobState.MIGRATING


def test_a_contained_center_refuses_network_and_its_jobs_see_only_their_own(
    ex: SlurmExecutor,
) -> None:
    assert ex.contain  # bwrap is installed here: the default
    with pytest.raises(ExecutorError, match="asks for network"):
        ex.submit(sub("true", network=True))
    ref = ex.submit(sub("ls /proc | grep -c '^[0-9]'; grep -c : /proc/net/dev; hostname; ls /"))
    assert final(ex, ref) is JobState.SUCCEEDED
    procs, interfaces, host, *root = ex.logs(ref).split()
    assert int(procs) <= 4 and int(interfaces) == 1  # bwrap, sh, ls, grep; loopback only
    assert host == "suanwang-job" and "home" not in root and "run" not in root


#: A contained job that tries to forge its run's records, in the run directory next to its usage
#: file (its cwd before issue 15's fix) and at ``$ELSEWHERE`` if set: an early exit code that
#: the wrapper cannot replace (``exit_code.tmp`` a directory) and its own text; then it uses
#: what is its own.
FORGER = """\
for d in "$(dirname "$SUANWANG_USAGE_FILE")" $ELSEWHERE; do
  echo 0 > "$d/exit_code"; mkdir "$d/exit_code.tmp"; echo 'echo forged' > "$d/job"
done
echo '{"tokens": 7}' >> "$SUANWANG_USAGE_FILE"
echo saved > "$SUANWANG_CHECKPOINT_DIR/state"
echo mine > mine && echo "cwd: $(cat mine)"
echo tried; sleep 3; exit 3
"""


@pytest.mark.parametrize("shared", ["none", "holding-output-dir", "link-to-it"])
def test_a_contained_job_cannot_forge_its_recorded_exit_nor_rewrite_its_text(
    ex: SlurmExecutor, shared_tmp: Path, shared: str
) -> None:
    """Also where a shared directory holds the output directory (the sandbox hides it there),
    or reaches it through a symbolic link."""
    assert ex.contain
    s = sub(FORGER)
    run_dir = ex.output_dir / run_name(s)
    if shared == "holding-output-dir":
        ex.shared_dirs = [ex.output_dir.parent]
    elif shared == "link-to-it":
        (shared_tmp / "alias").symlink_to(ex.output_dir.parent)
        ex.shared_dirs = [shared_tmp / "alias"]
        elsewhere = shared_tmp / "alias" / ex.output_dir.name / run_dir.name
        s = dataclasses.replace(s, env={"ELSEWHERE": str(elsewhere)})
    ref = ex.submit(s)
    deadline = time.monotonic() + 30
    while "tried" not in ex.logs(ref):
        assert time.monotonic() < deadline, ex.logs(ref)
        ex.poll([ref])
        time.sleep(0.2)
    # still running: no end recorded, so neither failover nor a restarted controller skips it
    assert ex.recorded_exit(ref) is None
    assert final(ex, ref) is JobState.FAILED
    assert ex.poll([ref])[ref].exit_code == 3 and ex.recorded_exit(ref) == 3  # the real one
    assert (run_dir / "job").read_text() == FORGER + "\n"
    assert not (run_dir / "exit_code.tmp").exists()
    # what is its own it wrote: cwd, usage file, checkpoint directory
    assert "cwd: mine" in ex.logs(ref) and (run_dir / "work" / "mine").read_text() == "mine\n"
    assert ex.reported_usage(ref) == RunUsage(7)
    assert (run_dir / "checkpoint" / "state").read_text() == "saved\n"


def test_a_contained_job_of_the_shared_user_keeps_to_its_part_too(slurm_testbed: Testbed) -> None:
    """``unsafe_shared_user``: the run's directories are everyone's (``0777``), its usage file
    too; contained, the job still writes only its own part."""
    c = slurm_testbed.clusters[0]
    with SlurmExecutor(c.center_id, c.url, c.token_file, slurm_testbed.user, c.jobs_dir,
                       partition="suanwang", unsafe_shared_user=True) as ex:  # fmt: skip
        s = sub(FORGER, tenant="carol")  # no account of her own
        ref = ex.submit(s)
        run_dir = ex.output_dir / run_name(s)
        modes = [(run_dir / p).stat().st_mode & 0o777 for p in ("work", "usage.jsonl")]
        assert modes == [0o777, 0o666]
        assert final(ex, ref) is JobState.FAILED and ex.recorded_exit(ref) == 3
        assert (run_dir / "job").read_text() == FORGER + "\n"
        assert ex.reported_usage(ref) == RunUsage(7)
        assert (run_dir / "work" / "mine").read_text() == "mine\n"


def test_a_contained_job_cannot_hold_its_lease_itself(
    slurm_testbed: Testbed, shared_tmp: Path
) -> None:
    """A job that touches its lease does not keep a run the platform gave up on alive."""
    c = slurm_testbed.clusters[1]
    with executor_for(slurm_testbed, c, lease_s=2, shared_dirs=[shared_tmp]) as ex:
        _lease_expires(ex, shared_tmp, 'd=$(dirname "$SUANWANG_USAGE_FILE"); '
                       '( while :; do touch "$d/lease"; sleep 0.3; done ) & ')  # fmt: skip


def test_a_contained_run_is_refused_where_its_job_could_write_runs_records(
    ex: SlurmExecutor,
) -> None:
    """A shared or checkpoint directory in the output directory, not in the run's own part of
    it, would be bound into the sandbox with runs' records: such a run is not submitted."""
    s = sub("true")
    ex.shared_dirs = [ex.output_dir / "scratch"]
    with pytest.raises(ExecutorError, match="could forge runs' records"):
        ex.submit(s)
    ex.shared_dirs = []
    for ckpt in (ex.output_dir, ex.output_dir / run_name(s)):
        with pytest.raises(ExecutorError, match=f"{ckpt} .* is in output_dir"):
            ex.submit(dataclasses.replace(s, checkpoint_dir=str(ckpt)))
    assert not (ex.output_dir / run_name(s)).exists()
    ex.contain = False  # uncontained, nothing is kept from the job anyway
    assert final(ex, ex.submit(s)) is JobState.SUCCEEDED


def test_unreachable_cluster_and_bad_token(slurm_testbed: Testbed, tmp_path: Path) -> None:
    c = slurm_testbed.clusters[0]
    with (
        SlurmExecutor(
            "x", "http://127.0.0.1:9", c.token_file, "nobody", tmp_path, timeout_s=2
        ) as down,
        pytest.raises(ExecutorError, match="unreachable"),
    ):
        down.poll(["1:sw-x"])
    bad = tmp_path / "token"
    bad.write_text("not-a-jwt")
    wrong = SlurmExecutor("x", c.url, bad, "nobody", tmp_path, timeout_s=5)
    with wrong, pytest.raises(ExecutorError):
        wrong.capacity()
    missing = SlurmExecutor("x", c.url, tmp_path / "nope", "nobody", tmp_path)
    with missing, pytest.raises(ExecutorError, match="cannot read token"):
        missing.capacity()


@pytest.mark.parametrize(
    ("record", "state", "code"),
    [
        ({"job_state": "PENDING", "state_reason": "Resources"}, JobState.SCHEDULED, None),
        ({"job_state": "RUNNING", "exit_code": 0}, JobState.RUNNING, None),
        ({"job_state": "COMPLETED", "exit_code": 0}, JobState.SUCCEEDED, 0),
        ({"job_state": "FAILED", "exit_code": 3 << 8}, JobState.FAILED, 3),
        ({"job_state": "FAILED", "exit_code": 85 << 8}, JobState.MIGRATING, 85),
        ({"job_state": "CANCELLED", "exit_code": 15}, JobState.CANCELLED, 143),
        ({"job_state": "TIMEOUT", "exit_code": 0}, JobState.FAILED, 0),
        ({"job_state": "NODE_FAIL", "exit_code": 0}, JobState.LOST, 0),
        (
            {"job_state": "FAILED", "state_reason": "JobLaunchFailure", "exit_code": 9},
            JobState.LOST,
            137,
        ),
        ({"job_state": "OUT_OF_MEMORY", "exit_code": 9}, JobState.FAILED, 137),
    ],
)
def test_state_mapping(record: dict[str, object], state: JobState, code: int | None) -> None:
    s = status_of("1", record)
    assert s.state is state
    assert s.exit_code == code


@pytest.mark.parametrize(
    ("record", "cause"),
    [
        ({"job_state": "PREEMPTED", "exit_code": 0}, PREEMPTED),
        ({"job_state": "FAILED", "exit_code": LEASE_EXIT_CODE << 8}, LEASE),
        ({"job_state": "FAILED", "state_reason": "JobLaunchFailure", "exit_code": 9}, CENTER),
        ({"job_state": "NODE_FAIL", "state_reason": "NodeDown", "exit_code": 0}, CENTER),
        ({"job_state": "REVOKED", "exit_code": 0}, CENTER),
        # words in Slurm's reason never make a cause (issue 16)
        ({"job_state": "NODE_FAIL", "state_reason": "node failed to release its lease"}, CENTER),
        ({"job_state": "FAILED", "exit_code": 3 << 8}, None),  # not lost: no cause
    ],
)
def test_lost_causes(record: dict[str, object], cause: str | None) -> None:
    """Why Slurm lost a run, as :func:`not_the_jobs_doing` reads it: its lease ran out before
    it started (the wrapper's :data:`LEASE_EXIT_CODE`), the cluster preempted it, or the
    center lost it otherwise."""
    s = status_of("1", record)
    assert s.cause == cause
    assert (s.state is JobState.LOST) == (cause is not None)


def test_the_stop_grace_follows_the_lease(tmp_path: Path) -> None:
    """How long failover waits for a silent center's runs (``stop_grace_s``) follows the lease
    their watchdog keeps, also when the lease is set after construction (an agent takes it
    from the control plane's answer). Before, it stayed at the first lease's: set to 1.5 s, a
    center's runs were still given up 63 s after it went silent."""
    ex = SlurmExecutor("c1", "http://127.0.0.1:9", tmp_path / "token", "u", tmp_path / "runs")
    assert (ex.lease_s, ex.stop_grace_s) == (60.0, 63.0)
    ex.lease_s = 1.5
    assert ex.stop_grace_s == 5.0
    ex.close()


def test_gres_parsing() -> None:
    assert _parse_gres("gpu:a100:8,gpu:ascend_910b:2(IDX:0-1),gpu:h20:0(IDX:N/A)") == {
        "a100": 8,
        "ascend-910b": 2,
        "h20": 0,
    }
    assert _parse_gres("") == {}


def test_a_run_without_word_from_the_platform_stops_itself(
    slurm_testbed: Testbed, shared_tmp: Path
) -> None:
    """Lease: a run nobody polls (its center cut off from the platform) kills itself."""
    c = slurm_testbed.clusters[1]
    # the job's marker goes to shared_tmp: writable from its sandbox, so the test sees it
    with executor_for(slurm_testbed, c, lease_s=2, shared_dirs=[shared_tmp]) as ex:
        _lease_expires(ex, shared_tmp)


def _lease_expires(ex: SlurmExecutor, tmp_path: Path, meanwhile: str = "") -> None:
    """A run nobody polls stops itself, whatever its job does ``meanwhile`` (shell text)."""
    marker = tmp_path / "finished"
    ref = ex.submit(sub(f"{meanwhile}sleep 3; sleep 3; touch {marker}"))
    wait_for(ex, ref, lambda s: s is JobState.RUNNING)
    lease = ex.output_dir / ref.split(":", 1)[1] / "lease"
    touched = lease.stat().st_mtime_ns  # by the platform's last poll
    # nobody polls from now on; after the lease the run is gone, and recorded no exit
    deadline = time.monotonic() + 30
    while "stopping this run" not in ex.logs(ref):
        assert time.monotonic() < deadline, ex.logs(ref)
        time.sleep(0.5)
    assert lease.stat().st_mtime_ns == touched  # nothing moved it since, the job included
    time.sleep(7)
    assert not marker.exists()
    assert ex.recorded_exit(ref) is None
    # killed from inside, Slurm reports a failed launch, but the watchdog's record says why:
    # lost by its lease, which counts for nothing (runs.not_the_jobs_doing); before, it was
    # lost by the center (cause center), counted against the job
    st = ex.poll([ref])[ref]
    assert (st.state, st.cause) == (JobState.LOST, LEASE), st
    assert "stopped by its lease" in st.reason


def test_polling_keeps_the_lease_and_the_exit_is_recorded(
    slurm_testbed: Testbed, tmp_path: Path
) -> None:
    c = slurm_testbed.clusters[1]
    with executor_for(slurm_testbed, c, lease_s=2) as ex:
        _lease_holds(ex)


def _lease_holds(ex: SlurmExecutor) -> None:
    ref = ex.submit(sub("sleep 5; exit 4"))
    assert ex.recorded_exit(ref) is None
    assert final(ex, ref) is JobState.FAILED  # polled every 0.2 s: the lease holds
    assert ex.poll([ref])[ref].exit_code == 4
    assert ex.recorded_exit(ref) == 4
    assert "stopping this run" not in ex.logs(ref)
    # a ref whose name does not match the Slurm job is not that job
    jid = ref.split(":")[0]
    assert ex.poll([f"{jid}:sw-other"])[f"{jid}:sw-other"].state is JobState.LOST


def test_a_queued_run_the_platform_gave_up_does_not_start(
    slurm_testbed: Testbed, shared_tmp: Path
) -> None:
    """A run whose lease expired while it waited (nobody polls it) never starts its job."""
    c = slurm_testbed.clusters[1]
    with executor_for(slurm_testbed, c, lease_s=1, shared_dirs=[shared_tmp]) as ex:
        marker = shared_tmp / "ran"
        blocker = ex.submit(sub("sleep 60", cards=8, accelerator="h100"))
        wait_for(ex, blocker, lambda st: st is JobState.RUNNING)
        ref = ex.submit(sub(f"touch {marker}", cards=1, accelerator="h100"))
        time.sleep(1)
        assert status_of_ref(ex, ref).state is JobState.SCHEDULED  # queued behind the blocker
        # make the lease look old, as after a long outage, then let Slurm start the job
        lease = Path(c.jobs_dir) / ref.split(":", 1)[1] / "lease"
        old = time.time() - 60
        os.utime(lease, (old, old))
        ex.cancel(blocker)
        deadline = time.monotonic() + 30
        while not (st := status_of_ref(ex, ref)).state.is_terminal and st.state.value != "lost":
            assert time.monotonic() < deadline, st
            time.sleep(0.3)
        assert not marker.exists()
        assert st.state is JobState.LOST and st.exit_code == 75
        assert st.cause == LEASE  # counts for nothing (runs.not_the_jobs_doing)
        assert "not starting this run" in ex.logs(ref)


def status_of_ref(ex: SlurmExecutor, ref: str) -> ExecutorStatus:
    # poll renews leases of queued runs: read Slurm's record without touching the lease
    jid = int(ref.split(":")[0])
    return status_of(ref, ex._jobs()[jid])
