"""LocalExecutor on real processes: lifecycle, slots, cancel, idempotency, restarts, checkpoints."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suanwang.core.lifecycle import JobState
from suanwang.executors import (
    CHECKPOINT_EXIT_CODE,
    Executor,
    ExecutorError,
    ExecutorStatus,
    LocalExecutor,
    RunUsage,
    Submission,
)
from suanwang.executors.local.sandbox import SharedUser

CENTER = "c1"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.02)


def job(
    job_id: str,
    command: str | None = None,
    *,
    script: str | None = None,
    cpus: int = 1,
    cards: int = 0,
    env: dict[str, str] | None = None,
    attempt: int = 0,
) -> Submission:
    return Submission(
        job_id=job_id,
        name=job_id,
        command=command,
        script=script,
        cpus=cpus,
        cards=cards,
        accelerator="any",
        mem_gb=1.0,
        env=env or {},
        checkpoint_dir=None,
        attempt=attempt,
    )


def work(root: Path, run: str) -> Path:
    """A run's own directory (its cwd): the only place outside its sandbox's /tmp where a job
    writes, and where a test leaves it files (the job's account owns it)."""
    return root / CENTER / run / "work"


def status(ex: LocalExecutor, ref: str) -> ExecutorStatus:
    return ex.poll([ref])[ref]


def wait_state(ex: LocalExecutor, ref: str, state: JobState, timeout: float = 10.0) -> None:
    wait_until(lambda: status(ex, ref).state is state, timeout, f"{ref} to be {state}")


def _stat(pid: int) -> list[str] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return data[data.rindex(b")") + 2 :].decode().split()


def live_in_group(pgid: int) -> list[int]:
    """Non-zombie processes of a process group."""
    pids = []
    for name in os.listdir("/proc"):
        fields = _stat(int(name)) if name.isdigit() else None
        if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            pids.append(int(name))
    return pids


def pgid_of(pid: int) -> int:
    fields = _stat(pid)
    assert fields is not None, f"no process {pid}"
    return int(fields[2])


@pytest.fixture(autouse=True)
def _kill_leftovers(tmp_path: Path) -> Iterator[None]:
    """Kill any job process of this test still running at its end (a failed test's jobs)."""
    yield
    marker = f"SUANWANG_CHECKPOINT_DIR={tmp_path}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if any(e.startswith(marker) for e in environ.split(b"\0")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(name), signal.SIGKILL)


@pytest.fixture
def ex(tmp_path: Path) -> LocalExecutor:
    return LocalExecutor(tmp_path, CENTER, cpus=4, cards=2, kill_grace_s=2.0)


# ---------------------------------------------------------------------- lifecycle


def test_is_an_executor(ex: LocalExecutor) -> None:
    assert isinstance(ex, Executor)
    assert ex.name == "local:c1"


def test_success_with_output_in_logs(ex: LocalExecutor) -> None:
    ref = ex.submit(job("ok", "echo hello; echo oops >&2"))
    assert ref == "c1/ok"
    wait_state(ex, ref, JobState.SUCCEEDED)
    st = status(ex, ref)
    assert st.exit_code == 0
    assert st.started_at is not None and st.ended_at is not None
    assert st.started_at <= st.ended_at
    assert ex.logs(ref) == "hello\noops\n"
    assert ex.logs(ref, tail_bytes=5) == "oops\n"
    assert ex.capacity().used_cpus == 0


def test_nonzero_exit_fails_with_its_code(ex: LocalExecutor) -> None:
    ref = ex.submit(job("bad", "echo trying; exit 3"))
    wait_state(ex, ref, JobState.FAILED)
    st = status(ex, ref)
    assert st.exit_code == 3
    assert "exit code 3" in st.reason
    assert "trying" in ex.logs(ref)


def test_script_with_shebang_and_job_environment(
    ex: LocalExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVER_SECRET", "s3cret")
    script = textwrap.dedent(
        """\
        #!/bin/sh
        echo "id=$SUANWANG_JOB_ID cards=$SUANWANG_CARDS cpus=$SUANWANG_CPUS mine=$MINE"
        echo "secret=${SERVER_SECRET:-none} cwd-ok=$(test -w . && echo yes)"
        test -d "$SUANWANG_CHECKPOINT_DIR" && echo ckpt-dir-ok
        """
    )
    ref = ex.submit(job("envjob", script=script, cpus=2, cards=1, env={"MINE": "x"}))
    wait_state(ex, ref, JobState.SUCCEEDED)
    out = ex.logs(ref)
    assert "id=envjob cards=1 cpus=2 mine=x" in out
    assert "secret=none cwd-ok=yes" in out  # the server's environment does not leak into jobs
    assert "ckpt-dir-ok" in out


def test_tokens_a_job_reports_are_collected_per_run(ex: LocalExecutor) -> None:
    report = """echo '{"tokens": 300}' >> "$SUANWANG_USAGE_FILE"; """
    ref = ex.submit(job("served", report * 2 + 'echo "$SUANWANG_USAGE_FILE"'))
    wait_state(ex, ref, JobState.SUCCEEDED)
    assert ex.reported_usage(ref) == RunUsage(600)
    assert ex.logs(ref).strip().endswith("/c1/served/usage.jsonl")  # in its own run dir
    other = ex.submit(job("served", "true", attempt=1))  # a new run reports afresh
    wait_state(ex, other, JobState.SUCCEEDED)
    assert ex.reported_usage(other) == RunUsage()
    assert ex.reported_usage("c1/nope") == RunUsage()  # unknown refs: nothing reported
    assert ex.reported_usage("../../etc/passwd") == RunUsage()


def test_unknown_refs(ex: LocalExecutor) -> None:
    assert status(ex, "c1/nope").state is JobState.LOST
    assert status(ex, "other/x").state is JobState.LOST
    with pytest.raises(ExecutorError, match="local:c1"):
        ex.cancel("c1/nope")
    with pytest.raises(ExecutorError, match="local:c1"):
        ex.logs("../../etc/passwd")


def test_submission_is_checked(ex: LocalExecutor) -> None:
    with pytest.raises(ValueError, match="exactly one of command and script"):
        job("x", "true", script="true")
    with pytest.raises(ValueError, match="job_id"):
        ex.submit(job("../escape", "true"))
    with pytest.raises(ExecutorError, match=r"local:c1.*needs 1 cpus and 3 cards"):
        ex.submit(job("big", "true", cards=3))


# ---------------------------------------------------------------------- cancel


def test_cancel_kills_the_whole_process_group(ex: LocalExecutor, tmp_path: Path) -> None:
    ready = work(tmp_path, "long") / "ready"
    ref = ex.submit(job("long", "sleep 30 & touch ready; sleep 30"))
    wait_until(ready.exists, what="the job to start")
    pgid = pgid_of(json.loads((tmp_path / CENTER / "long" / "pid").read_text())["pid"])
    assert len(live_in_group(pgid)) >= 2  # the wrapper, the job's shell (and its sleeps)
    assert status(ex, ref).state is JobState.RUNNING
    t0 = time.monotonic()
    ex.cancel(ref)
    assert time.monotonic() - t0 < 1.5  # SIGTERM was enough; no wait for the grace period
    st = status(ex, ref)
    assert st.state is JobState.CANCELLED
    assert st.ended_at is not None
    assert live_in_group(pgid) == []
    ex.cancel(ref)  # idempotent
    assert status(ex, ref).state is JobState.CANCELLED
    assert ex.capacity().used_cpus == 0


def test_what_a_job_leaves_running_in_its_group_is_stopped_when_it_ends(tmp_path: Path) -> None:
    """The job's shell ends at once, a process it started in the background lives on in the
    run's process group: the run's end stops it (and a run that left nothing is finalized
    without looking further: ``with_token``'s empty-group answer). Unsandboxed, where ``$!``
    is this host's pid (a sandboxed job's processes end with its PID namespace)."""
    ex = LocalExecutor(tmp_path, CENTER, cpus=4, cards=0, sandbox=SharedUser())
    ref = ex.submit(job("bg", "sleep 300 & echo $! > bg.tmp && mv bg.tmp bg.pid"))
    done = ex.submit(job("clean", "true"))
    bg = work(tmp_path, "bg") / "bg.pid"
    wait_until(bg.exists, what="the background process to start")
    pid = int(bg.read_text())
    wait_state(ex, ref, JobState.SUCCEEDED)
    wait_state(ex, done, JobState.SUCCEEDED)
    gone = lambda: (f := _stat(pid)) is None or f[0] in ("Z", "X")  # noqa: E731
    wait_until(gone, what="the background process to stop")


def test_a_cancel_after_the_run_ended_by_itself_keeps_its_end(tmp_path: Path) -> None:
    """A run that finished (or failed) on its own before the cancel came, not yet looked at,
    ends as it did, not ``cancelled``: an agent fencing its runs reports what really happened
    (a finished run reported stopped would be run again)."""
    ex = LocalExecutor(tmp_path, CENTER, cpus=2, cards=0)
    done, failed = ex.submit(job("done", "true")), ex.submit(job("failed", "exit 3"))
    for run in ("done", "failed"):
        wait_until((tmp_path / CENTER / run / "exit_code").exists, what=f"{run} to end")
    time.sleep(0.01)  # the cancel comes strictly after the run's end
    ex.cancel(done)
    ex.cancel(failed)
    got = ex.poll([done, failed])
    assert (got[done].state, got[done].exit_code) == (JobState.SUCCEEDED, 0)
    assert (got[failed].state, got[failed].exit_code) == (JobState.FAILED, 3)
    running = ex.submit(job("running", "sleep 30"))
    wait_state(ex, running, JobState.RUNNING)
    ex.cancel(running)  # one still running is cancelled as before
    assert status(ex, running).state is JobState.CANCELLED


def test_cancel_escalates_to_sigkill(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0, kill_grace_s=0.3)
    ready = work(tmp_path, "stubborn") / "ready"
    ref = ex.submit(job("stubborn", "trap '' TERM; touch ready; while :; do sleep 0.05; done"))
    wait_until(ready.exists, what="the job to start")
    ex.cancel(ref)
    assert status(ex, ref).state is JobState.CANCELLED
    assert ex.capacity().used_cpus == 0


def test_cancel_a_queued_job_never_starts_it(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0)
    marker = work(tmp_path, "second") / "ran"
    first = ex.submit(job("first", "sleep 0.3"))
    second = ex.submit(job("second", "touch ran"))
    assert status(ex, second).state is JobState.SCHEDULED
    ex.cancel(second)
    assert status(ex, second).state is JobState.CANCELLED
    wait_state(ex, first, JobState.SUCCEEDED)
    ex.poll([first, second])
    assert not marker.exists()
    assert status(ex, second).state is JobState.CANCELLED


# ---------------------------------------------------------------------- slots


def test_slot_limits_queue_jobs_in_order(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path, CENTER, cpus=8, cards=2)
    cmd = "date +%s.%N > start; sleep 1; date +%s.%N > end"
    refs = [ex.submit(job(f"j{i}", cmd, cards=1)) for i in range(3)]
    seen_running = 0
    assert status(ex, refs[2]).state is JobState.SCHEDULED
    assert "queued" in status(ex, refs[2]).reason

    def all_done() -> bool:
        nonlocal seen_running
        states = ex.poll(refs)
        running = sum(s.state is JobState.RUNNING for s in states.values())
        seen_running = max(seen_running, running)
        assert running <= 2
        cap = ex.capacity()
        assert cap.used_cards <= cap.slots_cards == 2
        return all(s.state is JobState.SUCCEEDED for s in states.values())

    wait_until(all_done, timeout=15, what="all three jobs to succeed")
    assert seen_running == 2
    start = {i: float((work(tmp_path, f"j{i}") / "start").read_text()) for i in range(3)}
    end = {i: float((work(tmp_path, f"j{i}") / "end").read_text()) for i in range(3)}
    assert start[2] >= min(end[0], end[1])  # the third started only after a slot freed


def test_strict_fifo_big_job_is_not_overtaken(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path, CENTER, cpus=8, cards=2)
    a = ex.submit(job("a", "sleep 0.4", cards=1))
    big = ex.submit(job("big", "true", cards=2))
    small = ex.submit(job("small", "true", cards=1))
    states = ex.poll([a, big, small])
    assert states[big].state is JobState.SCHEDULED
    assert states[small].state is JobState.SCHEDULED  # fits, but waits behind big
    wait_until(lambda: all(s.state.is_terminal for s in ex.poll([a, big, small]).values()))


def test_a_run_another_executor_finalized_frees_its_slots_for_the_next_submission(
    tmp_path: Path,
) -> None:
    """Two executors on one center's directory (two processes of the control plane): the
    slots of a run one of them saw launched are free for its next submission once the other
    finalized the run, and that submission starts at once, without a poll."""
    a = LocalExecutor(tmp_path, CENTER, cpus=8, cards=1)
    b = LocalExecutor(tmp_path, CENTER, cpus=8, cards=1)
    first = a.submit(job("first", "true", cards=1))
    assert (tmp_path / CENTER / "first" / "launched").exists()
    wait_state(b, first, JobState.SUCCEEDED)  # b's poll finalizes it
    second = a.submit(job("second", "true", cards=1))
    assert (tmp_path / CENTER / "second" / "launched").exists(), "queued behind a finished run"
    wait_state(a, second, JobState.SUCCEEDED)


def test_a_submission_does_not_look_again_at_runs_it_saw_launched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submission counts the runs it saw launched by their sizes, without a look at their
    files: with hundreds of runs, those looks were most of a submission's time."""
    ex = LocalExecutor(tmp_path, CENTER, cpus=64, cards=0, kill_grace_s=1.0)
    refs = [ex.submit(job(f"r{i}", "sleep 30")) for i in range(12)]
    runs = {tmp_path / CENTER / ref.split("/")[1] for ref in refs}
    looked: list[Path] = []
    for name in ("exists", "is_dir"):
        real = getattr(Path, name)

        def look(self: Path, *args: object, _real: Callable[..., bool] = real) -> bool:
            looked.append(self)
            return _real(self, *args)

        monkeypatch.setattr(Path, name, look)
    new = ex.submit(job("new", "sleep 30"))
    monkeypatch.undo()
    assert not [p for p in looked if p in runs or p.parent in runs]
    assert ex.capacity().used_cpus == 13  # all counted: the new one started beside them
    for ref in [*refs, new]:
        ex.cancel(ref)


# ---------------------------------------------------------------------- idempotency


def test_submit_twice_runs_once(ex: LocalExecutor, tmp_path: Path) -> None:
    marker = work(tmp_path, "once") / "marker"
    sub = job("once", "echo ran >> marker; sleep 0.2")
    ref1 = ex.submit(sub)
    ref2 = ex.submit(sub)
    other = LocalExecutor(tmp_path, CENTER, cpus=4, cards=2)  # another server process, say
    ref3 = other.submit(sub)
    assert ref1 == ref2 == ref3
    wait_state(ex, ref1, JobState.SUCCEEDED)
    assert ex.submit(sub) == ref1  # also after it finished
    other.poll([ref1])
    assert marker.read_text() == "ran\n"


# ---------------------------------------------------------------------- restarts


def test_new_executor_reattaches_after_the_old_one_is_dropped(tmp_path: Path) -> None:
    go = work(tmp_path, "running") / "go"
    marks = {name: work(tmp_path, name) / "marks" for name in ("running", "queued")}
    cmd = "echo $SUANWANG_JOB_ID >> marks; while [ ! -e go ]; do sleep 0.02; done"
    a = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0)
    running = a.submit(job("running", cmd))
    queued = a.submit(job("queued", "echo $SUANWANG_JOB_ID >> marks"))
    wait_until(lambda: marks["running"].exists() and marks["running"].read_text() == "running\n")
    assert status(a, queued).state is JobState.SCHEDULED
    del a  # a crash: no cleanup of any kind
    gc.collect()

    b = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0)
    assert status(b, running).state is JobState.RUNNING
    assert status(b, queued).state is JobState.SCHEDULED
    assert b.capacity().used_cpus == 1
    go.touch()
    wait_state(b, running, JobState.SUCCEEDED)
    wait_state(b, queued, JobState.SUCCEEDED)
    # each ran exactly once
    assert [marks[n].read_text() for n in ("queued", "running")] == ["queued\n", "running\n"]


_CRASHING_SERVER = """
import os, sys
from pathlib import Path
from suanwang.executors import LocalExecutor, Submission
root = sys.argv[1]
ex = LocalExecutor(Path(root), "c1", cpus=1, cards=0)
cmd = "echo $SUANWANG_JOB_ID >> marks; while [ ! -e go ]; do sleep 0.02; done"
for name in ("first", "second"):
    ex.submit(Submission(name, name, cmd, None, 1, 0, "any", 1.0, {}, None))
os.kill(os.getpid(), 9)
"""


def test_survives_a_server_killed_with_sigkill(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CRASHING_SERVER, str(tmp_path)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    ex = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0)
    first, second = "c1/first", "c1/second"
    marks = {name: work(tmp_path, name) / "marks" for name in ("first", "second")}
    wait_until(lambda: marks["first"].exists() and marks["first"].read_text() == "first\n")
    states = ex.poll([first, second])
    assert states[first].state is JobState.RUNNING  # its server died; the job did not
    assert states[second].state is JobState.SCHEDULED
    assert not marks["second"].exists()
    for name in marks:
        (work(tmp_path, name) / "go").touch()
    wait_state(ex, second, JobState.SUCCEEDED)
    assert status(ex, first).state is JobState.SUCCEEDED
    assert [marks[n].read_text() for n in ("first", "second")] == ["first\n", "second\n"]


def test_crash_windows_during_launch(tmp_path: Path) -> None:
    """White box: the server died after claiming slots but before starting or recording."""
    ex = LocalExecutor(tmp_path, CENTER, cpus=1, cards=0, launch_grace_s=0.0)
    go = work(tmp_path, "adopt") / "go"
    # died after writing nothing about a started process: the wrapper is found by its token
    ref = ex.submit(job("adopt", "while [ ! -e go ]; do sleep 0.02; done"))
    pid_file = tmp_path / CENTER / "adopt" / "pid"
    recorded = json.loads(pid_file.read_text())
    pid_file.unlink()
    assert status(ex, ref).state is JobState.RUNNING
    assert json.loads(pid_file.read_text()) == recorded
    go.touch()
    wait_state(ex, ref, JobState.SUCCEEDED)
    # died between claiming the slots and starting the process: it is queued again and runs
    blocker = ex.submit(job("blocker", "sleep 0.3"))
    ref = ex.submit(job("claimed", "echo started"))
    run = tmp_path / CENTER / "claimed"
    (run / "queued").rename(run / "launched")
    assert status(ex, ref).state is JobState.SCHEDULED
    assert (run / "queued").exists() and not (run / "launched").exists()  # queued again
    wait_state(ex, blocker, JobState.SUCCEEDED)
    wait_state(ex, ref, JobState.SUCCEEDED)
    assert ex.logs(ref) == "started\n"


# ---------------------------------------------------------------------- checkpoints

CHECKPOINTABLE = textwrap.dedent(
    """\
    #!/bin/sh
    if [ -n "$SUANWANG_RESUME_FROM" ]; then
        echo "resumed from $(cat "$SUANWANG_RESUME_FROM/state")"
        exit 0
    fi
    trap 'echo step-7 > "$SUANWANG_CHECKPOINT_DIR/state"; exit 85' USR1
    echo ready
    while :; do sleep 0.05; done
    """
)


def test_checkpoint_then_resume(ex: LocalExecutor) -> None:
    sub = job("train", script=CHECKPOINTABLE, cards=1)
    ref = ex.submit(sub)
    wait_until(lambda: "ready" in ex.logs(ref), what="the job to install its trap")
    ckpt = ex.checkpoint(ref)
    assert ckpt is not None
    wait_state(ex, ref, JobState.MIGRATING)
    st = status(ex, ref)
    assert st.exit_code == CHECKPOINT_EXIT_CODE
    assert ckpt in st.reason
    assert (Path(ckpt) / "state").read_text() == "step-7\n"
    assert ex.checkpoint(ref) == ckpt  # idempotent
    assert ex.capacity().used_cards == 0  # a checkpointed run holds no slots

    resumed = ex.resume(sub, ckpt)
    assert resumed != ref
    assert ex.resume(sub, ckpt) == resumed  # idempotent per checkpoint
    wait_state(ex, resumed, JobState.SUCCEEDED)
    assert ex.logs(resumed) == "resumed from step-7\n"
    with pytest.raises(ExecutorError, match="cannot checkpoint"):
        ex.checkpoint(resumed)  # finished


def test_checkpoint_of_a_job_that_ignores_the_convention(ex: LocalExecutor) -> None:
    ref = ex.submit(job("naive", "echo ready; sleep 30"))
    wait_until(lambda: "ready" in ex.logs(ref))
    assert ex.checkpoint(ref) is not None
    wait_state(ex, ref, JobState.FAILED)
    st = status(ex, ref)
    assert st.exit_code == 128 + signal.SIGUSR1
    assert "SIGUSR1" in st.reason


def test_resume_needs_an_existing_directory(ex: LocalExecutor, tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match="no directory"):
        ex.resume(job("r", "true"), str(tmp_path / "missing"))
