"""``suanwang agent`` and ``suanwang agent token create``: what they refuse, clearly (the agent
at work: tests/server/test_server_agents_e2e.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from suanwang.server.database.models import CenterAgent
from suanwang.server.database.session import make_engine, session_factory
from suanwang.server.models.keys import hash_key

Invoke = Callable[..., tuple[int, str, str]]


def test_token_create_stores_only_the_hash_and_checks_the_center(
    invoke: Invoke, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    code, _, err = invoke("agent", "token", "create", "--center", "zhongwei", "--db", db)
    assert code == 2 and "no database file" in err  # never creates a database
    assert invoke("tenants", "create", "ops", "--role", "operator", "--db", db)[0] == 0
    code, _, err = invoke("agent", "token", "create", "--center", "atlantis", "--db", db)
    assert code == 2 and "--center 'atlantis': no such center in scenario 'china'" in err
    code, out, _ = invoke("agent", "token", "create", "--center", "zhongwei", "--db", db, "--json")
    assert code == 0
    token = json.loads(out)["token"]
    assert token.startswith("swa_")
    engine = make_engine(db)
    with session_factory(engine)() as session:
        row = session.scalars(select(CenterAgent)).one()
    engine.dispose()
    assert (row.center_id, row.token_hash) == ("zhongwei", hash_key(token))


def test_the_agent_says_what_is_missing_or_wrong(invoke: Invoke, tmp_path: Path) -> None:
    code, _, err = invoke("agent", "--center", "zhongwei")
    assert code == 2 and "needs --url, --token-file, --config" in err
    token, config = tmp_path / "token", tmp_path / "agent.yaml"
    token.write_text("swa_x\n")
    config.write_text("executor:\n  type: local\n  cpus: -1\n")
    base = ["agent", "--center", "zhongwei", "--token-file", str(token), "--config", str(config)]
    code, _, err = invoke(*base, "--url", "ftp://x")
    assert code == 2 and "--url 'ftp://x'" in err
    code, _, err = invoke(*base, "--url", "http://127.0.0.1:9")
    assert code == 2 and "agent.yaml:3: executor.local.cpus" in err
    code, _, err = invoke(*base[:4], str(tmp_path / "none"), *base[5:], "--url", "http://h")
    assert code == 2 and "cannot read it" in err


def test_the_agent_takes_every_replicas_address_and_refuses_a_bad_or_repeated_one(
    invoke: Invoke, tmp_path: Path
) -> None:
    token, config = tmp_path / "token", tmp_path / "agent.yaml"
    token.write_text("swa_x\n")
    config.write_text("executor:\n  type: local\n  cpus: -1\n")
    base = ["agent", "--center", "zhongwei", "--token-file", str(token), "--config", str(config)]
    for urls in (["--url", "http://a:8000", "--url", "https://b"], ["--url", "http://a,http://b/"]):
        code, _, err = invoke(*base, *urls)
        assert code == 2 and "agent.yaml:3: executor.local.cpus" in err  # the addresses passed
    code, _, err = invoke(*base, "--url", "http://a", "--url", "ftp://b")
    assert code == 2 and "--url 'ftp://b': give the control plane's address, http://" in err
    code, _, err = invoke(*base, "--url", "http://a,")
    assert code == 2 and "--url '' (in 'http://a,'): give the control plane's address" in err
    code, _, err = invoke(*base, "--url", "http://")
    assert code == 2 and "--url 'http://': give the control plane's address" in err
    code, _, err = invoke(*base, "--url", "http://a:8000", "--url", "http://b,HTTP://A:8000/")
    assert code == 2 and "--url 'HTTP://A:8000/' (in 'http://b,HTTP://A:8000/')" in err
    assert "the same address as 'http://a:8000': give each API replica's address once" in err
