"""The database commands (tenants, billing, ledger) find the database in --db, else
$SUANWANG_DB; a command never creates a database it was only asked to use: a missing SQLite
file or a database without the platform's tables is an error naming it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager, closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanwang.cli import app
from suanwang.server.database.session import DatabaseMissing, make_engine

runner = CliRunner()
PERIOD = ["--period", "2026-05"]
#: Every database command but the two that may set up a new database.
USES_A_DATABASE = [
    ["billing", "invoice", "acme", *PERIOD],
    ["billing", "settle", *PERIOD],
    ["billing", "topup", "acme", "10"],
    ["billing", "payout", "north-dc"],
    ["billing", "configure"],  # only shows the settings
    ["billing", "quota", "grant", "acme", "--card-hours", "1"],
    ["billing", "quota", "show", "acme"],
    ["ledger", "verify"],
    ["tenants", "centers", "north-dc"],
]
IDS = [" ".join(args[:2]) for args in USES_A_DATABASE]
HINT = "point at it with --db URL or SUANWANG_DB (suanwang demo prints its own)"


def invoke(args: list[str], **env: str) -> tuple[int, str, str]:
    r = runner.invoke(app, args, env={"SUANWANG_DB": "", **env})
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize("args", USES_A_DATABASE, ids=IDS)
def test_a_missing_sqlite_file_is_named_not_created(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default, sqlite:///suanwang.db, is here
    missing = tmp_path / "suanwang.db"
    code, out, err = invoke(args)
    assert (code, out) == (2, "")
    assert err == f"error: no database file {missing} (--db sqlite:///suanwang.db): {HINT}\n"
    other = tmp_path / "demo" / "demo.db"
    for how in (["--db", f"sqlite:///{other}"], []):
        code, _, err = invoke([*args, *how], SUANWANG_DB=f"sqlite:///{other}")
        assert code == 2 and f"no database file {other} " in err
    assert list(tmp_path.iterdir()) == []  # no file, no directory


@pytest.mark.parametrize("args", USES_A_DATABASE, ids=IDS)
def test_an_empty_sqlite_file_is_not_the_platforms(args: list[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    code, _, err = invoke([*args, "--db", f"sqlite:///{empty}"])
    assert code == 2
    assert err == (
        f"error: database sqlite:///{empty} has no suanwang tables (not the platform's?): {HINT}\n"
    )
    with closing(sqlite3.connect(empty)) as db:  # still without a table
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_an_empty_postgresql_schema_is_not_the_platforms(
    pg_schema: Callable[..., AbstractContextManager[str]],
) -> None:
    with pg_schema() as url:
        code, _, err = invoke(["ledger", "verify"], SUANWANG_DB=url)
        assert code == 2 and f"database {url} has no suanwang tables" in err


def test_suanwang_db_names_the_database_and_db_wins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'platform.db'}"
    code, out, err = invoke(["tenants", "create", "acme", "--json"], SUANWANG_DB=url)
    assert code == 0, err  # tenants create sets up a new database
    assert json.loads(out)["api_key"].startswith("sw_")
    code, out, _ = invoke(["billing", "invoice", "acme", *PERIOD, "--json"], SUANWANG_DB=url)
    assert code == 0 and json.loads(out)["tenant"] == "acme"
    assert invoke(["ledger", "verify"], SUANWANG_DB=url)[0] == 0
    nowhere = f"sqlite:///{tmp_path / 'nowhere.db'}"
    assert invoke(["ledger", "verify", "--db", url], SUANWANG_DB=nowhere)[0] == 0
    assert invoke(["ledger", "verify", "--db", nowhere], SUANWANG_DB=url)[0] == 2
    assert not (tmp_path / "nowhere.db").exists()


def test_changing_billing_settings_may_set_up_a_new_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, err = invoke(["billing", "configure", "--require", "--db", url, "--json"])
    assert code == 0, err
    assert json.loads(out)["billing_required"] is True
    assert invoke(["billing", "configure", "--db", url])[0] == 0


def test_an_engine_that_may_not_create_opens_only_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with pytest.raises(DatabaseMissing) as exc:
        make_engine(f"sqlite:///{path}", create=False)
    assert exc.value.path == path and not path.exists()
    make_engine(f"sqlite:///{path}").connect().close()  # the default creates it
    engine = make_engine(f"sqlite:///{path}", create=False)
    path.unlink()  # gone after the check: SQLite itself refuses to create it (mode=rw)
    with pytest.raises(Exception, match="unable to open database file"):
        engine.connect()
    assert not path.exists()
    engine.dispose()
