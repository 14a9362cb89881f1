"""``suanwang offers ...`` and ``suanwang reservations ...`` against a real server (uvicorn in a
thread on the test database, SQLite and PostgreSQL), as in production."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import typer
import uvicorn
from fastapi import FastAPI
from pinned import NOW
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from suanwang.cli_platform import register
from suanwang.server.database.models import Tenant, TenantRole
from suanwang.server.models.centers import grant_centers

cli = typer.Typer()
register(cli)
runner = CliRunner()


@pytest.fixture(scope="module")
def url(app: FastAPI) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)


def run(url: str, who: Any, *args: str) -> Any:
    return runner.invoke(cli, list(args), env={"SUANWANG_URL": url, "SUANWANG_API_KEY": who.key})


def test_publish_list_reserve_cancel_withdraw_from_the_command_line(
    url: str, client: Any, make_tenant: Any, sessions: sessionmaker[Session], alice: Any
) -> None:
    prov = make_tenant(TenantRole.PROVIDER)
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, prov.id), centers=["zhangjiakou"],
                      now=NOW)  # fmt: skip
    window = ["--start", "2025-07-01T16:00+08:00", "--end", "2025-07-02T02:00+08:00"]
    r = run(url, prov, "offers", "publish", "--center", "zhangjiakou", "--model", "a100",
            "--units", "16", "--price", "2.40", "--type", "reserved", *window,
            "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    offer = json.loads(r.stdout)
    assert offer["start"] == "2025-07-01T08:00:00+00:00" and offer["units"] == 16
    # a bad price: one line naming the field, exit 2
    bad = run(url, prov, "offers", "publish", "--center", "zhangjiakou", "--model", "a100",
              "--units", "16", "--price", "2.40001", *window)  # fmt: skip
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: 422 price_cny_per_scu: ") and "4 decimals" in bad.stderr
    listed = run(url, alice, "offers", "list", "--type", "reserved", "--json")
    assert [o["id"] for o in json.loads(listed.stdout)["offers"]] == [offer["id"]]
    table = run(url, alice, "offers", "list")
    assert table.exit_code == 0 and "2.4000" in table.stdout
    r = run(url, alice, "reservations", "create", offer["id"], "--units", "2",
            "--start", "2025-07-01T08:00Z", "--end", "2025-07-01T10:00Z")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "paid 9.60 CNY" in r.stdout  # 2 A100 x 2 h x 2.40 CNY per SCU
    res_id = r.stdout.split(":")[0]
    mine = json.loads(run(url, alice, "reservations", "list", "--json").stdout)
    assert [m["id"] for m in mine["reservations"]] == [res_id]
    over = run(url, alice, "reservations", "create", offer["id"], "--units", "17",
               "--start", "2025-07-01T08:00Z", "--end", "2025-07-01T10:00Z")  # fmt: skip
    assert over.exit_code == 2 and "units" in over.stderr
    r = run(url, alice, "reservations", "cancel", res_id)
    assert r.exit_code == 0 and "refunded 9.60 CNY" in r.stdout
    r = run(url, alice, "offers", "withdraw", offer["id"])
    assert r.exit_code == 2 and "403" in r.stderr
    r = run(url, prov, "offers", "withdraw", offer["id"], "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["withdrawn"]
