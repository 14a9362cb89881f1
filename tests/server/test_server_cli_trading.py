"""``suanwang offers ...`` and ``suanwang reservations ...`` against a real server (uvicorn in a
thread on the test database, SQLite and PostgreSQL), as in production."""

from __future__ import annotations

import json
from typing import Any

from pinned import NOW
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from suanwang.cli import app as cli
from suanwang.server.database.models import Tenant, TenantRole
from suanwang.server.models.centers import grant_centers

runner = CliRunner()


def run(live_url: str, who: Any, *args: str) -> Any:
    return runner.invoke(
        cli, list(args), env={"SUANWANG_URL": live_url, "SUANWANG_API_KEY": who.key}
    )


def test_publish_list_reserve_cancel_withdraw_from_the_command_line(
    live_url: str, client: Any, make_tenant: Any, sessions: sessionmaker[Session], alice: Any
) -> None:
    prov = make_tenant(TenantRole.PROVIDER)
    with sessions.begin() as s:
        grant_centers(session=s, tenant=s.get_one(Tenant, prov.id), centers=["zhangjiakou"],
                      now=NOW)  # fmt: skip
    window = ["--start", "2025-07-01T16:00+08:00", "--end", "2025-07-02T02:00+08:00"]
    r = run(live_url, prov, "offers", "publish", "--center", "zhangjiakou", "--model", "a100",
            "--units", "16", "--price", "2.40", "--type", "reserved", *window,
            "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    offer = json.loads(r.stdout)
    assert offer["start"] == "2025-07-01T08:00:00+00:00" and offer["units"] == 16
    # a bad price: one line naming the field, exit 2
    bad = run(live_url, prov, "offers", "publish", "--center", "zhangjiakou", "--model", "a100",
              "--units", "16", "--price", "2.40001", *window)  # fmt: skip
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: price_cny_per_scu: ") and "4 decimals" in bad.stderr
    listed = run(live_url, alice, "offers", "list", "--type", "reserved", "--json")
    assert [o["id"] for o in json.loads(listed.stdout)["offers"]] == [offer["id"]]
    table = run(live_url, alice, "offers", "list")
    assert table.exit_code == 0 and "2.4000" in table.stdout
    r = run(live_url, alice, "reservations", "create", offer["id"], "--units", "2",
            "--start", "2025-07-01T08:00Z", "--end", "2025-07-01T10:00Z")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "paid 9.60 CNY" in r.stdout  # 2 A100 x 2 h x 2.40 CNY per SCU
    res_id = r.stdout.split(":")[0]
    mine = json.loads(run(live_url, alice, "reservations", "list", "--json").stdout)
    assert [m["id"] for m in mine["reservations"]] == [res_id]
    over = run(live_url, alice, "reservations", "create", offer["id"], "--units", "17",
               "--start", "2025-07-01T08:00Z", "--end", "2025-07-01T10:00Z")  # fmt: skip
    assert over.exit_code == 2 and "units" in over.stderr
    r = run(live_url, alice, "reservations", "cancel", res_id)
    assert r.exit_code == 0 and "refunded 9.60 CNY" in r.stdout
    r = run(live_url, alice, "offers", "withdraw", offer["id"])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1
    r = run(live_url, alice, "offers", "withdraw", offer["id"], "--json")
    assert r.exit_code == 2 and r.stderr == ""
    assert json.loads(r.stdout)["error"]["status"] == 403
    r = run(live_url, prov, "offers", "withdraw", offer["id"], "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["withdrawn"]
