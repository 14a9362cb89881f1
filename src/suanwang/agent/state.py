"""The agent's state file: what a restarted agent needs to go on instead of running anything
again (JSON, written atomically: a temporary file, fsync, rename).

* every run it holds: the control plane's reference, the submission, the checkpoint it resumes
  from, and its local executor's reference (``null`` between deciding to start it and the
  local executor's answer: a restarted agent submits it again, which the local executor
  answers with the same run, idempotent per job and attempt), and, for a run it did not run
  through its executor, the status it reports instead (``reported``: refused, cancelled before
  it started, or stopped by the agent itself when its lease ran out: ``lost``);
* the lease the control plane last gave and when the agent last heard from it (wall clock,
  seconds since the epoch), so a restarted agent that cannot reach it knows when to stop its
  runs;
* the number of the last sync it sent (``last_seq``, :meth:`AgentState.next_seq`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The lease an agent assumes before the control plane has given one.
DEFAULT_LEASE_S = 30.0


@dataclass
class HeldRun:
    ref: str
    submission: dict[str, Any]
    resume_from: str | None = None
    local_ref: str | None = None
    #: the status reported instead of the executor's: {"state", "reason", "exit_code"} and
    #: "cause" when the agent knows it (absent in states saved before causes)
    reported: dict[str, Any] | None = None


@dataclass
class AgentState:
    runs: dict[str, HeldRun] = field(default_factory=dict)
    lease_s: float = DEFAULT_LEASE_S
    last_contact: float | None = None
    last_seq: int = 0

    def next_seq(self, now: float) -> int:
        """The number of the next sync sent (:mod:`suanwang.agent.protocol`): ``now`` (the
        agent's clock, seconds since the epoch) in microseconds, or one more than the last
        number when that is not above it.

        So numbers only grow within a process, and a restarted agent starts above every
        number it sent before: above the last one saved here, and by its clock above those sent
        since the save (each is its sending time but for the few sent within one microsecond)
        unless the clock went back meanwhile. If it did and the state file was lost too, the
        control plane refuses the sync as stale, naming the highest number it applied, and the
        agent goes on above that (:meth:`seq_past`): a lost state file never locks it out. (A
        counter from 1 would be refused after every lost state file; the clock makes that rare.)
        Microseconds since the epoch fit a 64-bit number until the year 294,000.
        """
        self.last_seq = max(self.last_seq + 1, int(now * 1_000_000))
        return self.last_seq

    def seq_past(self, applied: int) -> None:
        """The next sync's number is above ``applied`` (the highest the control plane says it
        applied)."""
        self.last_seq = max(self.last_seq, applied)

    @classmethod
    def load(cls, path: Path) -> AgentState:
        """The state saved at ``path`` (a new one if there is none); raises ``ValueError``
        naming the file when it cannot be read."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise ValueError(f"agent state {path}: cannot read it: {exc}") from None
        try:
            runs = {r["ref"]: HeldRun(**r) for r in data["runs"]}
            seq = data.get("last_seq", 0)  # absent in states saved before sync numbers
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise ValueError(f"last_seq {seq!r} is not a sync number")
            return cls(runs, float(data["lease_s"]), data["last_contact"], seq)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"agent state {path}: not an agent's state file ({exc})") from None

    def save(self, path: Path) -> None:
        doc = {
            "runs": [asdict(r) for r in self.runs.values()],
            "lease_s": self.lease_s,
            "last_contact": self.last_contact,
            "last_seq": self.last_seq,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
