"""The console's plain words for the API's codes (``static/words.js``), run by Node.js as the
browser loads them: why a job waits, a preemption in a job's events, a quota change."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from suanwang import web

WORDS = (web.STATIC / "words.js").as_uri()


def _run(node: str, expr: str) -> Any:
    """``expr`` (JavaScript, with the module as ``w``) evaluated by Node.js, as JSON."""
    script = f"import * as w from {json.dumps(WORDS)};\nconsole.log(JSON.stringify({expr}));"
    r = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_why_a_job_waits_in_words(node_ready: str) -> None:
    reasons = ["capacity", "quota used up", "waiting for its share", "deferred for price",
               "something new", None]  # fmt: skip
    short, long = _run(node_ready, f"[{json.dumps(reasons)}.map(w.waitingShort), "
                                   f"{json.dumps(reasons)}.map(w.waitingText)]")  # fmt: skip
    assert short == ["waiting for capacity", "quota used up", "waiting for its share",
                     "deferred for price", "waiting: something new", None]  # fmt: skip
    assert long[0].startswith("Waiting for capacity: no pool")
    assert long[1].startswith("Waiting: its tenant's quota is used up.")
    assert long[2].startswith("Waiting for its share: other jobs went first")
    assert long[3].startswith("Deferred for price")
    assert long[4] == "Waiting: something new." and long[5] is None


def test_a_preemption_in_a_jobs_events(node_ready: str) -> None:
    by = "0b6c3f1e-1111-4222-8333-944455556666"
    details = [
        # the dispatcher's stop (running -> migrating) and checkpoint request
        {"event": "preempted", "by": by, "attempt": 0,
         "reason": f"preempted by job {by}: placed again from the start"},
        {"event": "checkpoint_requested", "why": "preempted", "by": by, "attempt": 1},
        {"event": "checkpoint_requested", "why": "drain", "center": "zhongwei", "attempt": 0},
        {"center": "zhongwei"},
    ]  # fmt: skip
    said = _run(node_ready, f"{json.dumps(details)}.map(w.eventText)")
    assert said[0] == {"text": "Preempted by job", "by": by,
                       "after": ": stopped, placed again from the start"}  # fmt: skip
    assert said[1]["text"] == "Checkpoint requested: preempted by job" and said[1]["by"] == by
    assert said[2] == {"text": "Checkpoint requested: its center is drained", "by": None,
                       "after": ""}  # fmt: skip
    assert said[3] is None
    assert _run(node_ready, f"w.shortId({json.dumps(by)})") == "0b6c3f1e…"


def test_a_quota_change_in_words(node_ready: str) -> None:
    before = {"cohort": "tsinghua", "quota_scu_per_h": 100, "borrow_limit_scu_per_h": 0,
              "lend_limit_scu_per_h": None, "weight": 1,
              "classes": ["urgent", "normal", "batch", "preemptible"],
              "caps": {"families": {}, "hubs": {}}, "budget_cny_per_month": None,
              "max_spend_cny_per_h": None}  # fmt: skip
    after = {**before, "quota_scu_per_h": 150, "lend_limit_scu_per_h": 20,
             "caps": {"families": {"nvidia": 40}, "hubs": {}},
             "budget_cny_per_month": "500.00"}  # fmt: skip
    b, a = json.dumps(before), json.dumps(after)
    created, updated, removed = _run(
        node_ready, f"[w.changeLines(null, {a}), w.changeLines({b}, {a}), w.changeLines({a}, null)]"
    )
    assert created == ["cohort: tsinghua", "quota: 150", "lend limit: 20",
                       "family caps: nvidia 40", "monthly budget: 500.00"]  # fmt: skip
    assert updated == ["quota: 100 → 150", "lend limit: all its unused quota → 20",
                       "family caps: none → nvidia 40",
                       "monthly budget: none → 500.00"]  # fmt: skip
    assert removed == ["cohort was tsinghua", "quota was 150", "lend limit was 20",
                       "family caps was nvidia 40", "monthly budget was 500.00"]  # fmt: skip
