"""Each tenant its own Unix account on a Slurm center (issue 15, item 2), on the real testbed.

Two tenants' jobs, submitted through the API, run as two different Unix users (``id -un`` in
their output, ``UserId`` in Slurm's record); bob's job tries to read and write alice's run and
checkpoint directories and is refused by the kernel (its output says so); a job that swaps its
log for a link to a secret file does not make the platform read the secret; a tenant with no
account at any center gets its job failed with a reason naming the centers, never run as
someone else; the ledger and the balances are the same afterwards.

The centers run uncontained here (``contain: false``, a center without bubblewrap): the
accounts alone must keep tenants apart. Containment is tested in
``test_server_slurm_contain.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from slurm_platform import FINAL, SMALL, Platform, events, get, ref_of, run_until
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.scenarios.loader import ScenarioError
from suanwang.server.database.models import Account, LedgerTransaction, TenantRole
from suanwang.server.models.billing.verify import verify
from suanwang.server.platform_config import SlurmExecutorConfig, load_platform_config
from suanwang.testbed import slurm


@pytest.fixture
def platform(
    app: FastAPI, sessions: sessionmaker[Session], slurm_testbed: slurm.Testbed, shared_tmp: Path
) -> Iterator[Platform]:
    p = Platform(app, sessions, slurm_testbed, shared_tmp, contain=False)
    yield p
    p.close()


def _books(sessions: sessionmaker[Session]) -> tuple[dict[str, Any], set[Any], list[str]]:
    """Every balance that is not zero, every ledger transaction (kind and job), and what
    ``ledger verify`` finds."""
    with sessions() as s:
        balances = {a.id: a.balance for a in s.scalars(select(Account)) if a.balance}
        txs = set(s.execute(select(LedgerTransaction.kind, LedgerTransaction.job_id)).all())
        return balances, txs, verify(session=s)


def _finish(client: TestClient, p: Platform, who: Any, job: dict[str, Any]) -> dict[str, Any]:
    run_until(p, lambda: get(client, who, job["id"])["state"] in FINAL, timeout=120,
              what=f"job {job['name']} ends")  # fmt: skip
    return get(client, who, job["id"])


def _slurm_user(tb: slurm.Testbed, job: dict[str, Any]) -> str:
    """``UserId`` of the job's (finished) run in Slurm's own record (``scontrol show job``)."""
    out = slurm.scontrol(tb.cluster(job["center_id"]), "-o", "show", "jobs")
    (line,) = [j for j in out.splitlines() if f" JobName=sw-{job['id']} " in j]
    return line.split(" UserId=", 1)[1].split("(", 1)[0]


def test_two_tenants_run_as_two_accounts_and_cannot_touch_each_others_files(
    client: TestClient,
    platform: Platform,
    slurm_testbed: slurm.Testbed,
    sessions: sessionmaker[Session],
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    secret = "alice-secret-7c1e"
    a = submit(alice, name="a", command=(
        f'id -un; echo {secret} > mine; echo {secret} > "$SUANWANG_CHECKPOINT_DIR/state"; '
        f"echo {secret} again"), **SMALL)  # fmt: skip
    books = _books(sessions)
    assert books[2] == []
    done_a = _finish(client, platform, alice, a)
    after = _books(sessions)  # running the job moved no money (its own charge at most)
    assert (after[0], after[2]) == (books[0], []) and after[1] - books[1] <= {("charge", a["id"])}
    assert done_a["state"] == "succeeded", done_a
    run_a = Path(slurm_testbed.cluster(done_a["center_id"]).jobs_dir) / f"sw-{a['id']}"
    ckpt_a = platform.live.checkpoint_dir(a["id"])
    assert (run_a / "mine").read_text() == f"{secret}\n"  # the platform (root) reads all
    assert (run_a.stat().st_mode & 0o777, ckpt_a.stat().st_mode & 0o777) == (0o700, 0o700)
    assert run_a.owner() == ckpt_a.owner() == "sw-alice"

    # bob's job goes for alice's files: listing, reading, writing, creating; every try fails
    tries = {
        "ls": f"ls {run_a}",
        "read log": f"cat {run_a}/output.log",
        "read file": f"cat {run_a}/mine",
        "read checkpoint": f"cat {ckpt_a}/state",
        "write file": f"echo bob >> {run_a}/mine",
        "create file": f"echo bob > {run_a}/from-bob",
        "create in checkpoint": f"echo bob > {ckpt_a}/from-bob",
    }
    script = "id -un\n" + "".join(
        f'{cmd} 2>&1 && echo "{what}: allowed" || echo "{what}: refused"\n'
        for what, cmd in tries.items()
    )
    b = submit(bob, name="b", command=script, **SMALL)
    books = _books(sessions)
    done_b = _finish(client, platform, bob, b)
    assert done_b["state"] == "succeeded", done_b
    log_b = client.get(f"/v1/jobs/{b['id']}/logs", headers=bob.headers).text
    assert log_b.splitlines()[0] == "sw-bob", log_b
    for what in tries:
        assert f"{what}: refused" in log_b, log_b
    assert log_b.count("Permission denied") >= len(tries), log_b
    assert secret not in log_b
    assert (run_a / "mine").read_text() == f"{secret}\n"
    assert not (run_a / "from-bob").exists() and not (ckpt_a / "from-bob").exists()

    # two Unix users, in the jobs' own output and in Slurm's records
    log_a = client.get(f"/v1/jobs/{a['id']}/logs", headers=alice.headers).text
    assert log_a.splitlines()[0] == "sw-alice" and f"{secret} again" in log_a
    assert _slurm_user(slurm_testbed, done_a) == "sw-alice"
    assert _slurm_user(slurm_testbed, done_b) == "sw-bob"

    # bob's attempts moved no money: same balances, his job's charge at most, a sound ledger
    after = _books(sessions)
    assert (after[0], after[2]) == (books[0], []) and after[1] - books[1] <= {("charge", b["id"])}


def test_a_job_cannot_make_the_platform_read_a_file_for_it(
    client: TestClient,
    platform: Platform,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    """The platform reads run directories as root: a log swapped for a link is not followed."""
    job = submit(alice, name="swap", command=(
        "echo before; rm -f output.log exit_code; ln -s /etc/shadow output.log; "
        "ln -s /etc/shadow usage.jsonl"), **SMALL)  # fmt: skip
    done = _finish(client, platform, alice, job)
    logs = client.get(f"/v1/jobs/{job['id']}/logs", headers=alice.headers)
    assert logs.status_code == 200
    assert "root:" not in logs.text
    assert done["state"] == "succeeded"


def test_a_tenant_without_an_account_is_never_run_as_someone_else(
    client: TestClient,
    platform: Platform,
    make_tenant: Callable[..., Any],
    submit: Callable[..., dict[str, Any]],
) -> None:
    carol = make_tenant(TenantRole.CONSUMER, "carol")  # the testbed has no account for carol
    job = submit(carol, name="c", command="id -un", **SMALL)
    done = _finish(client, platform, carol, job)
    assert done["state"] == "failed" and done["center_id"] is None
    assert ref_of(platform.sessions, job["id"]) is None  # never handed to Slurm
    reason = events(client, carol, job["id"])[-1]["detail"]["reason"]
    assert "tenant carol: it has no account at" in reason
    assert "zhongwei" in reason and "beijing-yizhuang" in reason


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ("account_tokens: tokens, accounts: {alice: root}",
         "accounts.alice: 'root' is the platform's own account or root"),
        ("account_tokens: tokens, accounts: {alice: suanwang}", "the platform's own account"),
        ("account_tokens: tokens, accounts: {alice: sw-x, bob: sw-x}",
         "accounts.bob: 'sw-x' is also alice's account"),
        ("account_tokens: tokens, accounts: {alice: Alice}", "String should match pattern"),
        ("accounts: {alice: sw-alice}", "accounts: needs account_tokens"),
        ("limits: {max_processes: 0}", r"platform.yaml:4: .*limits.max_processes: .*equal to 1"),
        ("limits: {min_mem_gb: -1}", r"limits.min_mem_gb: .*greater than 0"),
        ("limits: {memory_gb: 4}", r"limits.memory_gb: .*[Ee]xtra inputs are not permitted"),
    ],
)  # fmt: skip
def test_the_platform_file_refuses_unsafe_accounts(
    tmp_path: Path, fields: str, problem: str
) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(
        "centers:\n"
        "  - center_id: zhongwei\n"
        "    executor: {type: slurm, url: 'http://127.0.0.1:1', token_file: t, user: suanwang,\n"
        f"               output_dir: jobs, {fields}}}\n"
    )
    with pytest.raises(ScenarioError, match=problem):
        load_platform_config(path)


def test_the_platform_file_sets_containment_and_shared_dirs(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    head = (
        "centers:\n"
        "  - center_id: zhongwei\n"
        "    executor: {type: slurm, url: 'http://127.0.0.1:1', token_file: t, user: suanwang,\n"
        "               output_dir: jobs"
    )
    path.write_text(head + ", contain: false, shared_dirs: [scratch, /srv/x]}\n")
    (ex,) = [c.executor for c in load_platform_config(path).centers]
    assert isinstance(ex, SlurmExecutorConfig) and ex.contain is False
    assert ex.shared_dirs == [str(tmp_path / "scratch"), "/srv/x"]
    path.write_text(head + "}\n")
    (ex,) = [c.executor for c in load_platform_config(path).centers]
    assert isinstance(ex, SlurmExecutorConfig) and (ex.contain, ex.shared_dirs) == (None, [])
    path.write_text(head + ", contain: maybe}\n")
    with pytest.raises(ScenarioError, match="contain"):
        load_platform_config(path)
