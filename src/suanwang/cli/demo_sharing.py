"""The demo's scene of a scarce network (issue 14): two tenants with quotas and one preemption.

The demo serves ``china`` with every center's cards and CPU cores x :data:`CAPACITY_SCALE`
(written to its directory: :func:`suanwang.scenarios.export.write_scaled`), and each local
executor offers what its center has there, so a pool the dispatcher sees full is full.
``render-farm`` (a small quota) fills every H100 of that network with checkpointable render
shots, beyond its quota on borrowed capacity; then ``nlp-lab``'s fine-tune, within its quota,
arrives and finds no H100 free: the dispatcher preempts one shot, which checkpoints, goes back
to the queue and resumes where it stopped once H100s are free again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from suanwang.cli.output import out

#: Every center's cards and CPU cores in the demo's network, as a share of ``china``'s: 3,754
#: cards, of which 40 H100s (10 at shanghai-lingang, 20 at beijing-yizhuang, 10 at
#: beijing-haidian).
CAPACITY_SCALE = 0.02
#: The accelerator the scene fills, and its cards in the demo's network.
SCARCE_MODEL = "h100"
SCARCE_CARDS = 40

#: ``PUT /v1/quotas/{tenant}`` bodies. A run of 10 H100s is 32 to 34 SCU/h (by precision):
#: within nlp-lab's quota, beyond render-farm's.
QUOTAS: dict[str, dict[str, Any]] = {
    "nlp-lab": {"cohort": "tsinghua", "quota_scu_per_h": 100},
    "render-farm": {"cohort": "studio", "quota_scu_per_h": 20},
}

#: the states of a job that may still hold (or come to hold) capacity
UNFINISHED = ("pending", "scheduled", "running", "migrating")
SHOTS = 4
SHOT_CARDS = SCARCE_CARDS // SHOTS
FRAMES = 24
#: A render shot renders a frame a second; on SIGUSR1 it writes how many it has done to its
#: checkpoint directory and exits 85 (checkpointed); a resumed run starts from there.
RENDER_COMMAND = (
    'f=0; if [ -n "$SUANWANG_RESUME_FROM" ]; then '
    'f=$(cat "$SUANWANG_RESUME_FROM/frames" 2>/dev/null || echo 0); '
    'echo "resumed from its checkpoint: $f frames done"; fi; '
    'trap \'echo $f > "$SUANWANG_CHECKPOINT_DIR/frames"; '
    'echo "checkpointed after frame $f"; exit 85\' USR1; '
    f'echo "rendering frames $((f + 1))-{FRAMES}"; '
    f"while [ $f -lt {FRAMES} ]; do sleep 1 & wait $!; f=$((f + 1)); "
    'echo "frame $f rendered"; done'
)
#: A shot, due within the hour of its submission: the planner does not defer it (a start an
#: hour later would end past the deadline's margin), so it takes the H100s now.
RENDER_JOB: dict[str, Any] = {
    "kind": "render", "origin": "shanghai", "checkpointable": True,
    "resources": {"cards": SHOT_CARDS, "cpus": 40, "accelerator": SCARCE_MODEL},
    "stacks": ["cuda"], "duration_s": 3600, "deadline_s": 3600, "command": RENDER_COMMAND,
}  # fmt: skip
#: nlp-lab's fine-tune, due within the hour too: it needs as many H100s as one shot holds.
LAB_JOB: dict[str, Any] = {
    "name": "finetune-h100", "kind": "finetune", "origin": "beijing",
    "resources": {"cards": SHOT_CARDS, "cpus": 80, "accelerator": SCARCE_MODEL},
    "stacks": ["cuda"], "duration_s": 1800, "deadline_s": 3600,
    "command": "s=0; while [ $s -lt 12 ]; do s=$((s + 1)); "
               'echo "fine-tuning step $s/12 on $SUANWANG_CARDS H100s"; sleep 1; done; '
               "echo saved adapter",
}  # fmt: skip


@dataclass
class Scene:
    """The jobs of the scene, and the preemption once seen."""

    url: str
    operator: dict[str, str]
    shots: list[str]
    lab: str | None = None
    victim: str | None = None


def until(done: Callable[[], bool], wait_s: float, step_s: float = 0.25) -> bool:
    """Poll ``done`` until it holds (True) or ``wait_s`` seconds have passed (False)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if done():
                return True
        except (httpx.HTTPError, ValueError, KeyError):
            pass  # the API is busy or starting: ask again
        if time.monotonic() > deadline:
            return False
        time.sleep(step_s)


def set_quotas(url: str, operator: dict[str, str]) -> None:
    """Give the scene's tenants their quotas (from then on the dispatcher shares in turn)."""
    for name, body in QUOTAS.items():
        r = httpx.put(f"{url}/v1/quotas/{name}", json=body, headers=operator, timeout=30)
        if not r.is_success:
            raise RuntimeError(f"quota of {name} refused: {r.status_code} {r.text}")


def submit(url: str, key: str, body: dict[str, Any]) -> str:
    r = httpx.post(f"{url}/v1/jobs", json=body, headers=_bearer(key), timeout=30)
    if r.status_code != 201:
        raise RuntimeError(f"demo job {body['name']} refused: {r.status_code} {r.text}")
    return str(r.json()["id"])


def clear(url: str, keys: list[str]) -> int:
    """Cancel the jobs of these tenants (their keys) that a demo run before left unfinished
    (a demo database used again): the scene starts with its H100s free. Returns how many."""
    cancelled = 0
    for key in keys:
        page = httpx.get(f"{url}/v1/jobs", params={"limit": 500}, headers=_bearer(key), timeout=30)
        for job in page.json()["items"]:
            if job["state"] in UNFINISHED:
                r = httpx.post(
                    f"{url}/v1/jobs/{job['id']}/cancel", headers=_bearer(key), timeout=30
                )
                cancelled += r.is_success
    return cancelled


def fill(url: str, operator: dict[str, str], key: str, wait_s: float = 15.0) -> Scene:
    """render-farm submits its shots; returns once the dispatcher has placed them (their
    H100s are taken before the demo's other jobs arrive), or after ``wait_s`` seconds."""
    shots = [submit(url, key, {**RENDER_JOB, "name": f"render-shot-{i + 1}"}) for i in range(SHOTS)]
    scene = Scene(url, operator, shots)
    until(lambda: all(_job(scene, j)["state"] != "pending" for j in shots), wait_s)
    return scene


def preempt(scene: Scene, key: str, wait_s: float = 60.0) -> None:
    """Once every shot renders (its checkpoint handler set), nlp-lab submits its fine-tune;
    waits for the preemption it makes (``scene.victim``) and says what happened."""

    def rendering(j: str) -> bool:
        logs = httpx.get(f"{scene.url}/v1/jobs/{j}/logs", headers=scene.operator, timeout=10)
        return _job(scene, j)["state"] == "running" and "rendering frames" in logs.text

    if not until(lambda: all(rendering(j) for j in scene.shots), wait_s):
        out.print("  (render-farm's shots have not all started yet: the fine-tune waits)")
    scene.lab = submit(scene.url, key, LAB_JOB)
    out.print(
        f"  nlp-lab submits {LAB_JOB['name']} ({SHOT_CARDS} H100s, within its quota): no H100 "
        "is free, so it preempts one of render-farm's shots on borrowed capacity",
        highlight=False,
        soft_wrap=True,
    )
    if until(lambda: _victim(scene) is not None, wait_s):
        say_preempted(scene)
    else:
        out.print(f"  no shot preempted yet; watch {scene.url}/#/jobs", highlight=False)


def say_preempted(scene: Scene) -> None:
    """``render job X was preempted by nlp-lab's job Y at T``, and how to watch it."""
    assert scene.victim is not None and scene.lab is not None
    job = _job(scene, scene.victim)
    events = _events(scene, scene.victim)
    i = next(i for i, e in enumerate(events) if e["detail"].get("by") == scene.lab)
    at = datetime.fromisoformat(events[i]["at"]).strftime("%H:%M:%S")
    where = [e["detail"]["center"] for e in events[:i] if e["detail"].get("center")]
    out.print(
        f"render job {job['name']} ({scene.victim}) was preempted by nlp-lab's job "
        f"{LAB_JOB['name']} ({scene.lab}) at {at} UTC on {where[-1] if where else '?'}: it "
        "checkpoints, waits in the queue and resumes where it stopped when H100s are free",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"  watch it: suanwang jobs {scene.victim}; console {scene.url}/#/jobs/{scene.victim}",
        highlight=False,
        soft_wrap=True,
    )


def outcome(scene: Scene) -> str | None:
    """The preempted shot now, for the demo's last words (None: no preemption seen)."""
    if scene.victim is None:
        return None
    job = _job(scene, scene.victim)
    resumed = "resumed" if job["state"] in ("running", "succeeded") else "not resumed yet"
    return f"preempted {job['name']}: {resumed}, {job['state']}"


def describe(tenant: str) -> str:
    quotas = ", ".join(
        f"{name} {q['quota_scu_per_h']} SCU/h (cohort {q['cohort']})" for name, q in QUOTAS.items()
    )
    return f"  quotas: {quotas}; {tenant} (the operator's mix): none, an equal share of the rest"


def _victim(scene: Scene) -> str | None:
    for j in scene.shots:
        if any(e["detail"].get("by") == scene.lab for e in _events(scene, j)):
            scene.victim = j
            return j
    return None


def _job(scene: Scene, job_id: str) -> dict[str, Any]:
    r = httpx.get(f"{scene.url}/v1/jobs/{job_id}", headers=scene.operator, timeout=10)
    got: dict[str, Any] = r.json()
    return got


def _events(scene: Scene, job_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{scene.url}/v1/jobs/{job_id}/events", headers=scene.operator, timeout=10)
    got: list[dict[str, Any]] = r.json()
    return got


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
