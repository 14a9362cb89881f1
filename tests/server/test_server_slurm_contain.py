"""Slurm jobs contained in bubblewrap (issue 15, "the same for two tenants on the Slurm
testbed"), on the real testbed.

Two tenants' jobs, submitted through the API to a contained center (the default: bwrap is
installed; no shared directories), run a probe as their own accounts: PostgreSQL at
127.0.0.1:5432 (TCP) and through its unix socket, the server's SQLite file (made readable to
every user for the test), the host's processes, the other tenant's run directory: every try
fails; and a directory every user may write to on the host: the file lands in the sandbox's
memory, never on the host. The same probe, uncontained (``contain: false``), reaches what it
can: so the probe is not blind. Each probe also tries to forge its run's records (an early exit
code the wrapper cannot replace, its own text rewritten): contained, the platform reads the real
end and the text as submitted; uncontained, the forgery stands (containment is what protects
them). The balances, the ledger and ``ledger verify`` are the same
afterwards (the jobs' own charges at most).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from slurm_platform import FINAL, SMALL, Platform, events, get, ref_of, run_until
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.executors.slurm import SlurmExecutor
from suanwang.server.database.models import Account, LedgerTransaction
from suanwang.server.models.billing.verify import verify
from suanwang.testbed import slurm

PG_SOCKET = Path("/var/run/postgresql/.s.PGSQL.5432")

PROBE = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    import os, socket
    def tcp():
        with socket.socket() as s:
            s.settimeout(5)
            return "reached" if s.connect_ex(("127.0.0.1", 5432)) == 0 else "refused"
    def unix():
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            return "reached" if s.connect_ex({socket!r}) == 0 else "refused"
    def read(path):
        try:
            with open(path, "rb") as f:
                return "read" if f.read(16) else "empty"
        except OSError:
            return "refused"
    def write(path, text="from a job"):
        try:
            with open(path, "w") as f:
                f.write(text)
            return "written"
        except OSError:
            return "refused"
    procs = sorted(open(f"/proc/{{p}}/comm").read().strip() for p in os.listdir("/proc")
                   if p.isdigit() and os.path.exists(f"/proc/{{p}}/comm"))
    print("user:", os.popen("id -un").read().strip())
    print("tcp:", tcp())
    print("unix:", unix())
    print("db:", read({db!r}) if {db!r} else "none")
    print("outside:", write({outside!r}))
    print("other:", read({other!r}))
    print("slurmd:", "seen" if "slurmd" in procs else "unseen", len(procs))
    # its run's records, next to its usage file: an end of its own (which the wrapper could not
    # replace: exit_code.tmp a directory) and its own text
    run = os.path.dirname(os.environ["SUANWANG_USAGE_FILE"])
    print("exit_code:", write(os.path.join(run, "exit_code"), "7"))
    try:
        os.mkdir(os.path.join(run, "exit_code.tmp"))
    except OSError:
        pass
    print("job:", write(os.path.join(run, "job"), "forged"))
    with open("mine", "w") as f:
        f.write("ok")
    print("own: written")
    """
)


@pytest.fixture
def readable_db(db_url: str) -> Iterator[str]:
    """The SQLite file of this session's server, readable by every user while the test runs
    (so that only the sandbox keeps a job from it); ``""`` on PostgreSQL."""
    if not db_url.startswith("sqlite:///"):
        yield ""
        return
    path = Path(db_url.removeprefix("sqlite:///"))
    saved = [(p, p.stat().st_mode & 0o7777) for p in (path, *path.parents)]
    path.chmod(0o644)
    for p in path.parents:
        p.chmod(p.stat().st_mode | 0o011)
    try:
        yield str(path)
    finally:
        for p, mode in saved:
            p.chmod(mode)


def _books(sessions: sessionmaker[Session]) -> tuple[dict[str, Any], set[Any], list[str]]:
    with sessions() as s:
        balances = {a.id: a.balance for a in s.scalars(select(Account)) if a.balance}
        txs = set(s.execute(select(LedgerTransaction.kind, LedgerTransaction.job_id)).all())
        return balances, txs, verify(session=s)


def _run(client: TestClient, p: Platform, who: Any, job: dict[str, Any]) -> dict[str, str]:
    """Run ``job`` to its end; what its probe found (``key: value`` lines of its log)."""
    try:
        run_until(p, lambda: get(client, who, job["id"])["state"] in FINAL, timeout=180,
                  what=f"job {job['name']} ends")  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}: {get(client, who, job['id'])}, {events(client, who, job['id'])}"
        ) from None
    done = get(client, who, job["id"])
    log = client.get(f"/v1/jobs/{job['id']}/logs", headers=who.headers).text
    assert done["state"] == "succeeded", (done, log)
    return dict(line.split(": ", 1) for line in log.splitlines() if ": " in line)


def _records(client: TestClient, p: Platform, who: Any, job: dict[str, Any]) -> tuple[Any, str]:
    """The end the run of ``job`` recorded, as the platform reads it, and the job's text."""
    ex = p.executors[get(client, who, job["id"])["center_id"]]
    ref = ref_of(p.sessions, job["id"])
    assert isinstance(ex, SlurmExecutor) and ref is not None
    return ex.recorded_exit(ref), (ex.output_dir / ref.split(":", 1)[1] / "job").read_text()


def _probe(db: str, outside: Path, other: Path) -> dict[str, Any]:
    """The job spec of a probe (a Python script)."""
    script = PROBE.format(socket=str(PG_SOCKET), db=db, outside=str(outside), other=str(other))
    return {"command": None, "script": script, **SMALL}


def test_two_tenants_jobs_reach_neither_the_database_nor_the_host(
    app: FastAPI,
    client: TestClient,
    sessions: sessionmaker[Session],
    slurm_testbed: slurm.Testbed,
    shared_tmp: Path,
    readable_db: str,
    alice: Any,
    bob: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    assert PG_SOCKET.is_socket()  # PostgreSQL is there to be reached
    platform = Platform(app, sessions, slurm_testbed, shared_tmp, shared_dirs=[])
    try:
        assert all(ex.contain for ex in platform.executors.values())  # the default here
        probe_a = _probe(readable_db, shared_tmp / "from-a", shared_tmp / "no")
        a = submit(alice, name="a", **probe_a)
        books = _books(sessions)
        assert books[2] == []
        found_a = _run(client, platform, alice, a)
        run_a = Path(slurm_testbed.cluster(get(client, alice, a["id"])["center_id"]).jobs_dir)
        run_a /= f"sw-{a['id']}"
        mine = run_a / "work" / "mine"  # its cwd
        probe_b = _probe(readable_db, shared_tmp / "from-b", mine)
        b = submit(bob, name="b", **probe_b)
        found_b = _run(client, platform, bob, b)
    finally:
        platform.close()
    for who, found in (("sw-alice", found_a), ("sw-bob", found_b)):
        assert found["user"] == who, found
        assert (found["tcp"], found["unix"]) == ("refused", "refused"), found
        assert found["db"] in ("refused", "none"), found
        assert found["slurmd"].split()[0] == "unseen" and int(found["slurmd"].split()[1]) <= 4
        assert found["own"] == "written", found
    assert found_b["other"] == "refused", found_b
    # a write outside its directories lands in the sandbox's own memory, never on the host
    assert not (shared_tmp / "from-a").exists() and not (shared_tmp / "from-b").exists()
    assert mine.read_text() == "ok"  # alice's own directory: hers to write
    # the records of their runs are the wrappers': the real end, the text as submitted
    for who, job, probe in ((alice, a, probe_a), (bob, b, probe_b)):
        assert _records(client, platform, who, job) == (0, probe["script"])
    assert found_a["job"] == found_b["job"] == "refused"
    after = _books(sessions)  # nothing moved but the jobs' own charges
    assert (after[0], after[2]) == (books[0], [])
    assert after[1] - books[1] <= {("charge", a["id"]), ("charge", b["id"])}


def test_the_same_probe_uncontained_reaches_them(
    app: FastAPI,
    client: TestClient,
    sessions: sessionmaker[Session],
    slurm_testbed: slurm.Testbed,
    shared_tmp: Path,
    readable_db: str,
    alice: Any,
    submit: Callable[..., dict[str, Any]],
) -> None:
    """``contain: false`` (a center without bubblewrap): the probe is not blind."""
    platform = Platform(app, sessions, slurm_testbed, shared_tmp, contain=False)
    try:
        a = submit(alice, name="u", **_probe(readable_db, shared_tmp / "from-u", shared_tmp / "no"))
        found = _run(client, platform, alice, a)
    finally:
        platform.close()
    assert (found["tcp"], found["unix"]) == ("reached", "reached"), found
    assert found["db"] == ("read" if readable_db else "none"), found
    assert found["outside"] == "written" and (shared_tmp / "from-u").exists()
    assert found["slurmd"].split()[0] == "seen", found
    # uncontained, a job runs as its wrapper's account: it can write its run's records
    assert found["job"] == "written" and _records(client, platform, alice, a) == (7, "forged")
