"""``suanwang quota set|show|rm|changes`` (issue 14, "Administration"): against a real server
(uvicorn in a thread, SQLite and PostgreSQL, the API's clock pinned) and without one. Every
refusal is one sentence naming the option, or one JSON document with --json; exit code 2."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from sqlalchemy import delete
from typer.testing import CliRunner

from suanwang.cli import app as cli
from suanwang.server.app import create_app
from suanwang.server.database.models import QuotaChange, TenantQuotaRow, TenantRole
from suanwang.server.models.tenants import create_tenant
from suanwang.server.settings import Settings

runner = CliRunner()
#: The API's clock (never the wall clock).
NOW = datetime(2025, 7, 1, 6, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Server:
    url: str
    keys: dict[str, str]  # tenant name -> API key
    app: Any

    def run(self, who: str, *args: str) -> Any:
        env = {"SUANWANG_URL": self.url, "SUANWANG_API_KEY": self.keys[who]}
        return runner.invoke(cli, list(args), env=env)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_schema: Callable[..., AbstractContextManager[str]],
) -> Iterator[Server]:
    if request.param == "sqlite":
        with _serve(f"sqlite:///{tmp_path_factory.mktemp('quota') / 'db.sqlite'}") as s:
            yield s
        return
    with pg_schema() as url, _serve(url) as s:
        yield s


class _serve(AbstractContextManager[Server]):
    """The app on ``db_url`` served by uvicorn in a thread, with an operator (``ops``), two
    consumers of one cohort (``nlp-lab``, ``hpc-lab``), a provider (``north-dc``) and a
    consumer whose name has a slash and what looks like markup."""

    def __init__(self, db_url: str) -> None:
        self.app = create_app(Settings(db_url=db_url), clock=lambda: NOW)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        keys = {}
        with self.app.state.sessions() as session:
            for name, role in (("ops", TenantRole.OPERATOR), ("nlp-lab", TenantRole.CONSUMER),
                               ("hpc-lab", TenantRole.CONSUMER),
                               ("north-dc", TenantRole.PROVIDER),
                               ("lab/[bold]x[/]", TenantRole.CONSUMER)):  # fmt: skip
                _, keys[name] = create_tenant(session=session, name=name, role=role, now=NOW)
            session.commit()
        return Server(f"http://127.0.0.1:{self.port}", keys, self.app)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture
def live(server: Server) -> Server:
    """The server with no quota set and no change recorded."""
    with server.app.state.sessions.begin() as session:
        session.execute(delete(QuotaChange))
        session.execute(delete(TenantQuotaRow))
    return server


NLP = ["quota", "set", "nlp-lab", "--cohort", "tsinghua", "--quota", "120", "--borrow", "60",
       "--lend", "100", "--classes", "normal,batch", "--classes", "preemptible",
       "--family-cap", "nvidia=80", "--hub-cap", "gansu=50", "--budget", "50000",
       "--max-spend", "500"]  # fmt: skip
HPC = ["quota", "set", "hpc-lab", "--cohort", "tsinghua", "--quota", "80"]


def test_operators_set_show_remove_and_audit_quotas(live: Server) -> None:
    r = live.run("ops", *HPC)
    assert r.exit_code == 0, r.output
    assert "hpc-lab: quota set; takes effect at the dispatcher's next round" in r.stdout
    r = live.run("ops", *NLP, "--json")
    assert r.exit_code == 0, r.output
    q = json.loads(r.stdout)
    assert q["changed"] is True and q["updated_at"].startswith("2025-07-01T06:30:00")
    assert q["settings"] == {
        "cohort": "tsinghua", "quota_scu_per_h": 120.0, "borrow_limit_scu_per_h": 60.0,
        "lend_limit_scu_per_h": 100.0, "weight": 1.0, "classes": ["normal", "batch", "preemptible"],
        "caps": {"families": {"nvidia": 80.0}, "hubs": {"gansu": 50.0}},
        "budget_cny_per_month": "50000.00", "max_spend_cny_per_h": "500.00",
    }  # fmt: skip
    again = live.run("ops", *NLP)
    assert again.exit_code == 0 and "nlp-lab: quota unchanged (already set so)" in again.stdout
    shown = live.run("ops", "quota", "show", "nlp-lab")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [
        "nlp-lab (cohort tsinghua)",
        "  quota      120 SCU/h, weight 1 (entitlement 120 SCU/h)",
        "  cohort     borrows up to 60 SCU/h, lends up to 100 SCU/h",
        "  classes    normal, batch, preemptible",
        "  caps       nvidia 80, hub gansu 50",
        "  budget     0.00 of 50000.00 CNY used in 2025-07; at most 500.00 CNY/h",
        "  using now  0 SCU/h in 0 job(s), 0% of quota, borrowing 0 SCU/h",
        "  set        2025-07-01T06:30:00 by ops",
    ]
    table = live.run("ops", "quota", "show")
    assert table.exit_code == 0 and "hpc-lab" in table.stdout and "nlp-lab" in table.stdout
    everyone = json.loads(live.run("ops", "quota", "show", "--json").stdout)
    assert [x["tenant"] for x in everyone["quotas"]] == ["hpc-lab", "nlp-lab"]
    # a tenant sees its own, and nobody else's
    mine = json.loads(live.run("nlp-lab", "quota", "show", "--json").stdout)
    assert [x["tenant"] for x in mine["quotas"]] == ["nlp-lab"]
    own = live.run("nlp-lab", "quota", "show", "nlp-lab")
    assert own.exit_code == 0 and own.stdout.startswith("nlp-lab (cohort tsinghua)")
    other = live.run("nlp-lab", "quota", "show", "hpc-lab")
    assert other.exit_code == 2 and other.stdout == ""
    assert other.stderr == "error: no tenant 'hpc-lab' (you may see only your own quota)\n"
    none = live.run("north-dc", "quota", "show")
    assert none.exit_code == 0 and none.stdout == "no quota is set (that you may see)\n"
    # only operators set, remove and audit
    for who in ("nlp-lab", "north-dc"):
        for args in (HPC, ["quota", "rm", "hpc-lab"]):
            r = live.run(who, *args)
            assert (r.exit_code, r.stderr) == (
                2,
                "error: only operators may set or remove quotas\n",
            )
        r = live.run(who, "quota", "changes", "--json")
        assert r.exit_code == 2 and r.stderr == ""
        assert json.loads(r.stdout)["error"] == {
            "status": 403, "message": "the record of quota changes is for operators",
            "detail": "the record of quota changes is for operators",
        }  # fmt: skip
    # removing hpc-lab would leave nlp-lab borrowing what nobody lends
    r = live.run("ops", "quota", "rm", "hpc-lab")
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("error: removing 'hpc-lab''s quota would leave tenants.nlp-lab.")
    assert live.run("ops", *NLP[:-8], "--borrow", "0").exit_code == 0  # no caps, no budget
    r = live.run("ops", "quota", "rm", "hpc-lab")
    assert r.exit_code == 0 and r.stdout.startswith("hpc-lab: quota removed;")
    r = live.run("ops", "quota", "rm", "hpc-lab")
    assert (r.exit_code, r.stderr) == (2, "error: tenant 'hpc-lab' has no quota (none is set)\n")
    r = live.run("ops", "quota", "rm", "atlantis", "--json")
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["status"] == 404
    log = json.loads(live.run("ops", "quota", "changes", "--json").stdout)["changes"]
    assert [(c["tenant"], c["action"], c["by"]) for c in log] == [
        ("hpc-lab", "removed", "ops"), ("nlp-lab", "updated", "ops"),
        ("nlp-lab", "created", "ops"), ("hpc-lab", "created", "ops"),
    ]  # fmt: skip
    text = live.run("ops", "quota", "changes", "--tenant", "nlp-lab", "--limit", "1")
    assert text.exit_code == 0, text.output
    assert "borrow_limit_scu_per_h 60 -> 0" in text.stdout and "hpc-lab" not in text.stdout


def test_a_name_with_a_slash_and_brackets_is_printed_as_it_is(live: Server) -> None:
    odd = "lab/[bold]x[/]"
    r = live.run("ops", "quota", "set", odd, "--cohort", "[red]c", "--quota", "5")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{odd} (cohort [red]c)\n")
    assert live.run(odd, "quota", "show", odd).stdout.startswith(f"{odd} (cohort [red]c)")
    for args in (["quota", "show"], ["quota", "changes"]):
        r = live.run("ops", *args)
        assert r.exit_code == 0 and odd in r.stdout and "[red]c" in r.stdout, r.output
    assert live.run("ops", "quota", "rm", odd).stdout.startswith(f"{odd}: quota removed")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--borrow", "60"], "error: --borrow (borrow_limit_scu_per_h): 60 is more than its "
         "cohort 'tsinghua' can lend (0 SCU/h from the other tenants)\n"),
        (["--quota", "-1"], "error: --quota (quota_scu_per_h): must be >= 0, not -1\n"),
        (["--weight", "0"], "error: --weight (weight): must be > 0, not 0\n"),
        (["--family-cap", "nvidiaa=1"], "error: --family-cap nvidiaa (caps.families.nvidiaa): "
         "unknown (known: cambricon, cpu, huawei, hygon, nvidia)\n"),
        (["--budget", "12.345"], "error: --budget (budget_cny_per_month): '12.345' has more "
         "than 2 decimals (CNY is kept to the fen)\n"),
        (["--cohort", " x"], "error: --cohort (cohort): ' x' has blanks at either end\n"),
    ],
)  # fmt: skip
def test_a_refused_setting_is_one_sentence_naming_the_option(
    live: Server, args: list[str], says: str
) -> None:
    r = live.run("ops", *HPC[:3], "--cohort", "tsinghua", "--quota", "10", *args)
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr == says  # pydantic's "Value error, " prefix dropped
    r = live.run("ops", *HPC[:3], "--cohort", "tsinghua", "--quota", "10", *args, "--json")
    assert r.exit_code == 2 and r.stderr == ""
    error = json.loads(r.stdout)["error"]
    assert error["status"] == 422 and error["message"] == says[len("error: ") : -1]
    assert json.loads(live.run("ops", "quota", "show", "--json").stdout) == {"quotas": []}


def test_an_unknown_class_names_the_option(live: Server) -> None:
    r = live.run("ops", *HPC, "--classes", "normal,vip")
    assert r.exit_code == 2 and r.stderr.startswith("error: --classes (classes.1): Input should")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--quota", "lots"], "--quota: 'lots' is not a number"),
        (["--quota", "inf"], "--quota: 'inf' is not a finite number"),
        (["--quota", "1", "--weight", "nan"], "--weight: 'nan' is not a finite number"),
        (["--quota", "1", "--family-cap", "nvidia"], "--family-cap: 'nvidia' is not "
         "NAME=SCU/h (e.g. nvidia=80)"),
        (["--quota", "1", "--hub-cap", "gansu=1,gansu=2"], "--hub-cap: 'gansu' is given twice"),
        (["--quota", "1", "--hub-cap", "gansu=x"], "--hub-cap gansu: 'x' is not a number"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_before_anything_is_sent(args: list[str], says: str) -> None:
    env = {"SUANWANG_API_KEY": "", "SUANWANG_URL": f"http://127.0.0.1:{_closed_port()}"}
    r = runner.invoke(cli, ["quota", "set", "t", "--cohort", "c", *args], env=env)
    assert (r.exit_code, r.stdout, r.stderr) == (2, "", f"error: {says}\n")
    r = runner.invoke(cli, ["quota", "set", "t", "--cohort", "c", *args, "--json"], env=env)
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["message"] == says


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


@pytest.mark.parametrize(
    "args",
    [["quota", "show"], ["quota", "show", "t"], ["quota", "rm", "t"], ["quota", "changes"],
     [*HPC]],
)  # fmt: skip
def test_no_key_or_no_server_is_one_sentence(args: list[str]) -> None:
    r = runner.invoke(cli, args, env={"SUANWANG_API_KEY": ""})
    assert r.exit_code == 2 and r.stdout == ""
    assert (
        r.stderr == "error: set SUANWANG_API_KEY to your API key (see: suanwang tenants create)\n"
    )
    url = f"http://127.0.0.1:{_closed_port()}"
    r = runner.invoke(cli, args, env={"SUANWANG_API_KEY": "sw_x", "SUANWANG_URL": url})
    assert r.exit_code == 2 and r.stderr.startswith(f"error: cannot reach the server at {url}")
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.output
    r = runner.invoke(cli, [*args, "--json"], env={"SUANWANG_API_KEY": "sw_x", "SUANWANG_URL": url})
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["status"] is None
