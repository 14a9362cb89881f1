"""`suanwang testbed`: real Slurm clusters up, a power cut, back with saved state, down."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanwang.cli import app
from suanwang.core.lifecycle import JobState
from suanwang.executors import Submission
from suanwang.executors.slurm import SlurmExecutor
from suanwang.server.platform_config import SlurmExecutorConfig, load_platform_config
from suanwang.testbed import slurm

runner = CliRunner()
SAVE_SETTLE_S = 3.0


def _listening(url: str) -> bool:
    port = int(url.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def executor(tb: slurm.Testbed, c: slurm.Cluster, timeout_s: float) -> SlurmExecutor:
    """The cluster's executor as the platform file has it: tenants' jobs run as their accounts
    (contained; they may also write next to the testbed's directory, where tests leave
    markers)."""
    return SlurmExecutor(c.center_id, c.url, c.token_file, tb.user, c.jobs_dir,
                         timeout_s=timeout_s, accounts=tb.accounts, account_tokens=c.tokens_dir,
                         shared_dirs=[Path(tb.dir).parent])  # fmt: skip


def job(job_id: str, command: str) -> Submission:
    return Submission(job_id=job_id, name=job_id, command=command, script=None, tenant="alice")


@pytest.fixture
def one(testbed_dir: Path) -> Iterator[tuple[Path, dict[str, object]]]:
    root = testbed_dir / "tb"
    r = runner.invoke(app, ["testbed", "up", "--slurm", "1", "--dir", str(root),
                            "--centers", "guian", "--tenants", "alice", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    try:
        yield root, doc
    finally:
        runner.invoke(app, ["testbed", "down", "--dir", str(root)])


def test_up_describes_clusters_and_writes_a_platform_file(
    one: tuple[Path, dict[str, object]],
) -> None:
    root, doc = one
    assert doc["config"] == str(root.resolve() / "platform.yaml")
    (center,) = doc["centers"]  # type: ignore[misc]
    assert center["center_id"] == "guian"
    assert center["up"] is True
    assert Path(center["slurm_conf"]).read_text().count("AuthAltTypes=auth/jwt") == 1
    assert center["gres"] == {"a100": 8, "ascend_910b": 8, "h20": 8, "h800": 8}
    cfg = load_platform_config(Path(doc["config"]))  # type: ignore[arg-type]
    assert cfg.scenario == "china"
    ex = cfg.centers[0].executor
    assert isinstance(ex, SlurmExecutorConfig)
    assert ex.url == center["url"]
    assert ex.accounts == {"alice": "sw-alice"} and ex.user == "root"
    assert ex.account_tokens == center["account_tokens"]  # type: ignore[index]
    assert Path(ex.account_tokens, "sw-alice").stat().st_mode & 0o777 == 0o600
    # another tenant's account, added later: the platform file maps it too
    r = runner.invoke(app, ["testbed", "account", "bob", "alice", "--dir", str(root)])
    assert r.exit_code == 0, r.output
    assert "bob: account sw-bob (new)" in r.output and "alice: account sw-alice (had" in r.output
    cfg = load_platform_config(Path(doc["config"]))  # type: ignore[arg-type]
    ex = cfg.centers[0].executor
    assert isinstance(ex, SlurmExecutorConfig)
    assert ex.accounts == {"alice": "sw-alice", "bob": "sw-bob"}
    bad = runner.invoke(app, ["testbed", "account", "Bad Name", "--dir", str(root)])
    assert bad.exit_code == 2 and "not be a valid Unix user name" in bad.output
    status = runner.invoke(app, ["testbed", "status", "--dir", str(root), "--json"])
    assert json.loads(status.stdout)["centers"][0]["up"] is True


def test_power_cut_kills_jobs_and_the_cluster_comes_back_with_its_state(
    one: tuple[Path, dict[str, object]],
) -> None:
    root, _ = one
    tb = slurm.Testbed.load(root)
    c = tb.cluster("guian")
    with executor(tb, c, timeout_s=3) as ex:
        _power_cut(root, c, ex)


def _power_cut(root: Path, c: slurm.Cluster, ex: SlurmExecutor) -> None:
    done = ex.submit(job("before", "echo early"))
    victim = ex.submit(job("victim", "sleep 300; echo never"))
    deadline = time.monotonic() + 20
    while not (
        ex.poll([victim])[victim].state is JobState.RUNNING
        and ex.poll([done])[done].state.is_terminal
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert any("sleep" in Path(f"/proc/{p}/cmdline").read_text() for p in _job_pids(c))
    # slurmctld writes its state a moment after a change; a cut right after a job ended can
    # lose that (test_a_finished_run_never_runs_again covers it). Let the state reach the disk.
    time.sleep(SAVE_SETTLE_S)

    r = runner.invoke(app, ["testbed", "stop", "guian", "--dir", str(root)])
    assert r.exit_code == 0, r.output
    assert not _listening(c.url)
    assert slurm.cluster_processes(c) == []  # daemons and job steps are gone
    with pytest.raises(Exception, match="unreachable"):
        ex.poll([victim])

    r = runner.invoke(app, ["testbed", "start", "guian", "--dir", str(root)])
    assert r.exit_code == 0, r.output
    # saved state: the finished job is still known and stays finished
    assert ex.poll([done])[done].state is JobState.SUCCEEDED
    # the killed one did not finish: it ended with the node (NODE_FAIL -> lost) or, if Slurm's
    # saved state predates its start, it waits to run again; never did it complete
    st = ex.poll([victim])[victim]
    assert st.state in (JobState.LOST, JobState.SCHEDULED, JobState.RUNNING), st
    assert "never" not in ex.logs(victim)
    ex.cancel(victim)
    # and the cluster takes new work
    again = ex.submit(job("after", "echo back"))
    deadline = time.monotonic() + 30
    while not ex.poll([again])[again].state.is_terminal:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "back" in ex.logs(again)


def _job_pids(c: slurm.Cluster) -> list[int]:
    return [p for p in slurm.cluster_processes(c) if Path(f"/proc/{p}").exists()]


def test_down_stops_everything_and_errors_are_clear(testbed_dir: Path) -> None:
    tmp_path = testbed_dir
    (tmp_path / "private").mkdir(mode=0o700)
    closed = tmp_path / "private" / "tb"  # tenants' accounts could not reach their jobs there
    r = runner.invoke(app, ["testbed", "up", "--slurm", "1", "--dir", str(closed)])
    assert r.exit_code == 2 and f"{closed.parent} is closed to other users" in r.output
    deep = tmp_path / ("d" * 80) / "tb"  # slurmstepd could not make its sockets there
    r = runner.invoke(app, ["testbed", "up", "--slurm", "1", "--dir", str(deep)])
    assert r.exit_code == 2 and f"{deep} is too deep for Slurm" in r.output, r.output
    assert not deep.exists()  # refused before anything was made
    root = tmp_path / "tb"
    r = runner.invoke(app, ["testbed", "up", "--slurm", "1", "--dir", str(root)])
    assert r.exit_code == 0, r.output
    tb = slurm.Testbed.load(root)
    again = runner.invoke(app, ["testbed", "up", "--slurm", "1", "--dir", str(root)])
    assert again.exit_code == 2 and "already holds a testbed" in again.output
    bad = runner.invoke(app, ["testbed", "stop", "atlantis", "--dir", str(root)])
    assert bad.exit_code == 2 and "no cluster for center 'atlantis'" in bad.output
    r = runner.invoke(app, ["testbed", "down", "--dir", str(root)])
    assert r.exit_code == 0, r.output
    for c in tb.clusters:
        assert slurm.cluster_processes(c) == []
        assert not _listening(c.url)
    missing = runner.invoke(app, ["testbed", "status", "--dir", str(root)])
    assert missing.exit_code == 2 and "no testbed" in missing.output
    unknown = runner.invoke(
        app, ["testbed", "up", "--slurm", "1", "--dir", str(tmp_path / "x"), "--centers", "mars"]
    )
    assert unknown.exit_code == 2 and "unknown center(s): mars" in unknown.output


def test_tokens_are_hs256_jwts_slurm_accepts() -> None:
    token = slurm.mint_token(b"k" * 32, "alice", lifespan_s=60)
    header, payload, sig = token.split(".")
    import base64

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sun"] == "alice" and claims["exp"] - claims["iat"] == 60
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["alg"] == "HS256"
    assert sig


def test_a_finished_run_never_runs_again(one: tuple[Path, dict[str, object]]) -> None:
    """The run wrapper's fence: a job Slurm starts again after losing state does not rerun."""
    root, _ = one
    tb = slurm.Testbed.load(root)
    c = tb.cluster("guian")
    with executor(tb, c, timeout_s=5) as ex:
        _fence(root, c, ex)


def _fence(root: Path, c: slurm.Cluster, ex: SlurmExecutor) -> None:
    marker = root.parent / "marker"  # where alice's account may write
    sub = job("once", f"echo ran >> {marker}")
    ref = ex.submit(sub)
    deadline = time.monotonic() + 30
    while not ex.poll([ref])[ref].state.is_terminal:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # what Slurm does with a job recovered from state saved before it ended: run it again
    env = {"SLURM_CONF": c.slurm_conf, "PATH": "/usr/bin:/bin:/usr/sbin"}
    jid = ref.split(":")[0]
    # a requeued job starts again once the finished run's credential expired (cred_expire=10)
    subprocess.run(["scontrol", "requeue", jid], env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while True:
        st = ex.poll([ref])[ref]
        if st.state.is_terminal and st.started_at and st.ended_at:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.3)
    assert st.state is JobState.SUCCEEDED
    assert marker.read_text() == "ran\n"  # exactly once
    assert "already ended; not run again" in ex.logs(ref)
