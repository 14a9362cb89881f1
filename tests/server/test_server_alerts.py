"""The alert rules shipped for operators (``deploy/prometheus``): valid for ``promtool``, their
unit tests pass, and every family they read is one ``/metrics`` serves; the control plane's
families (members, leaders) say what ``/v1/cluster`` says."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from suanwang.server.database.models import ClusterMember, LeaderTerm

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool(*args: str) -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: Debian's prometheus package has it (.ci/run installs it)"
    done = subprocess.run([promtool, *args], cwd=RULES, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_rules_pass_promtool_and_their_unit_tests() -> None:
    assert "SUCCESS: 7 rules found" in _promtool("check", "rules", "suanwang.rules.yml")
    assert "SUCCESS" in _promtool("test", "rules", "suanwang.rules.test.yml")


def test_every_family_the_rules_read_is_served_and_the_cluster_is_counted(
    app: FastAPI, client: TestClient, sessions: sessionmaker[Session], operator: Any
) -> None:
    now = app.state.signals.clock()
    with sessions.begin() as s:
        for i, (kind, age) in enumerate((("worker", 0), ("worker", 3600), ("api", 1))):
            at = now - timedelta(seconds=age)
            s.add(ClusterMember(id=f"m{i}", kind=kind, host="h", pid=i + 1, version="0",
                                started_at=at, heartbeat_at=at,
                                duties={"placement": 3} if i == 0 else {}))  # fmt: skip
        s.add(LeaderTerm(duty="placement", term=3, holder="m0", elected_at=now))
        s.add(LeaderTerm(duty="migrations", term=2, holder="m1", elected_at=now))  # stale
    text = client.get("/metrics", headers=operator.headers).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    rules = (RULES / "suanwang.rules.yml").read_text()
    named = {re.sub(r"_(total|sum|count)$", "", n) for n in re.findall(r"suanwang_\w+", rules)}
    assert named and named <= set(families), named - set(families)
    value = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert value[("suanwang_cluster_members", (("kind", "worker"),))] == 1
    assert value[("suanwang_cluster_members_stale", (("kind", "worker"),))] == 1
    assert value[("suanwang_cluster_members", (("kind", "api"),))] == 1
    assert value[("suanwang_leader_alive", (("duty", "placement"),))] == 1
    assert value[("suanwang_leader_alive", (("duty", "migrations"),))] == 0
    assert value[("suanwang_leader_term", (("duty", "placement"),))] == 3
