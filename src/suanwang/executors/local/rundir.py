"""A run's directory: reading and writing its files (atomically), and the status they record."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from suanwang.core.lifecycle import JobState
from suanwang.executors.base import ExecutorStatus, Submission


def base_run(sub: Submission) -> str:
    """A run's id: the job id, with ``.<attempt>`` for a new attempt after failover."""
    return sub.job_id + (f".{sub.attempt}" if sub.attempt else "")


def now() -> datetime:
    return datetime.now(UTC)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read()
    except OSError:
        return b""


def read_json(path: Path) -> dict[str, Any] | None:
    data = read_bytes(path)
    if not data:
        return None
    value: dict[str, Any] = json.loads(data)
    return value


def read_int(path: Path) -> int | None:
    try:
        return int(read_bytes(path).strip())
    except ValueError:
        return None


def read_time(path: Path) -> datetime | None:
    text = read_bytes(path).decode().strip()
    return datetime.fromisoformat(text) if text else None


def age_s(path: Path) -> float:
    return time.time() - path.stat().st_mtime


def run_token(run: Path) -> str:
    for name in ("launched", "queued"):
        data = read_json(run / name)
        if data is not None:
            return str(data["token"])
    return ""


def status_from(ref: str, final: dict[str, Any]) -> ExecutorStatus:
    def when(key: str) -> datetime | None:
        value = final[key]
        return datetime.fromisoformat(value) if value else None

    return ExecutorStatus(
        ref,
        JobState(final["state"]),
        final["exit_code"],
        when("started_at"),
        when("ended_at"),
        final["reason"],
        final.get("cause"),  # absent in records written before causes: not said
    )
