"""The agent's loop: every ``every_s`` seconds poll the center's executor, sync with the control
plane, apply its answer (docs/centers.md, "Agents").

Lease and fencing. The control plane gives an agent's runs up only once the agent has been
silent for longer than its lease plus a grace; the agent stops them itself before: when it has
not heard from the control plane for longer than the lease (the last one it was given), it
cancels every run it still has going and reports them ``lost`` when it reconnects ("fenced").
So a job the control plane places again elsewhere is no longer running here. The runs also
carry the lease themselves (the executor's ``lease_s``: a local run's watchdog, a Slurm run's
wrapper): a run no poll has seen alive for the lease stops by itself, so runs stop in time
even when the agent is stopped (``SIGSTOP``, a frozen machine) or killed and not restarted.
The executor is polled only while the agent is in contact (each poll renews the runs' leases:
polled without contact they would never stop by themselves), and the runs it has not polled
are reported as they were last seen.

Replicas. The agent knows every API replica of the control plane and syncs with one at a time,
moving to the next in the same step when the one in use fails in any way but a refusal
(:mod:`.replicas`). Its syncs are numbered (:meth:`~suanwang.agent.state.AgentState.next_seq`,
the last number kept in the state file), so a copy a replica records late, after a newer sync,
is refused and changes nothing: waiting for a replica that may still record it is no longer
needed. A stale refusal the agent reads itself (its numbering behind the control plane's
record) moves its numbering above the number applied and the sync is sent again at once.

Every instruction is applied idempotently: a run is started at most once per reference (the
state file remembers it before its executor is asked, and executors are idempotent per job and
attempt), cancelling or checkpointing twice does nothing more, and a restarted agent reports
the runs of its state file instead of starting anything again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from suanwang import __version__
from suanwang.agent.protocol import (
    LOG_TAIL_BYTES,
    SYNC_LOG_BUDGET_BYTES,
    CapacityReport,
    RunReport,
    SyncAnswer,
    SyncRequest,
    UsageReport,
)
from suanwang.agent.replicas import Replicas, Stale, Unsynced
from suanwang.agent.state import AgentState, HeldRun
from suanwang.core.lifecycle import JobState
from suanwang.executors.base import LEASE, Executor, ExecutorError, ExecutorStatus, Submission

log = logging.getLogger("suanwang.agent")

#: States in which a run has ended.
ENDED = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.MIGRATING, JobState.LOST}
)


#: The share of the lease one hand-over of runs to the executor may take (twice a step at
#: most: before the sync and after it); the runs not handed over wait for the next step
HAND_OVER_SHARE = 0.2

#: The ends a run comes to by itself (not by a cancel, a lease or a lost node).
OWN_ENDS = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.MIGRATING})


def submission_of(data: dict[str, Any]) -> Submission:
    """A :class:`Submission` from its JSON form; ``ValueError`` when it is not one."""
    try:
        return Submission(**data)
    except TypeError as exc:
        raise ValueError(f"not a submission: {exc}") from None


class Agent:
    """One center's agent. :meth:`step` is one round; :meth:`run` loops until stopped.
    ``clients``: one for each API replica of the control plane (:mod:`.replicas`)."""

    def __init__(
        self,
        center_id: str,
        executor: Executor,
        clients: Sequence[httpx.Client],
        state_file: Path,
        *,
        every_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        hand_over_s: float | None = None,
    ) -> None:
        self.center_id = center_id
        #: seconds a step may spend handing runs to the executor (None: a share of the lease)
        self.hand_over_s = hand_over_s
        self.executor = executor
        self.replicas = Replicas(center_id, clients)
        self.state_file = state_file
        self.every_s = every_s
        self.clock = clock
        self.state = AgentState.load(state_file)
        self.connected = False
        self._seen: dict[str, ExecutorStatus] = {}  # ref -> last status polled
        self._capacity: CapacityReport | None = None
        self._logs_sent: dict[str, str] = {}  # ref -> digest of the log tail last accepted
        self._why = ""  # why the last sync failed

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """Step every ``every_s`` seconds until ``stop`` is set (or
        :class:`~suanwang.agent.replicas.Refused`)."""
        while not stop.is_set():
            started = time.monotonic()
            again = self.step()
            if not again:
                stop.wait(max(0.0, self.every_s - (time.monotonic() - started)))

    def step(self) -> bool:
        """One round: fence if the lease ran out, poll (in contact), sync, apply. Returns True
        when another round should follow at once (the agent just reconnected: its report was
        not fresh)."""
        now = self.clock()
        if self._expired(now):
            self._fence(now)
        self._submit_unstarted()
        fresh = self._in_lease(now) and (self.connected or self._unseen())
        if fresh:
            self._poll()
        body, digests = self._request(fresh)
        sent_at = self.clock()
        answer = self._sync(body)
        if answer is None:
            return False
        was = self.connected
        self.connected, self._why = True, ""
        self.state.last_contact = sent_at
        self.state.lease_s = answer.lease_s
        self._logs_sent.update(digests)
        if not was:
            log.info(
                "agent of center %s connected to the control plane at %s (lease %g s, %d runs)",
                self.center_id, self.replicas.client.base_url, answer.lease_s, len(self.state.runs),
            )  # fmt: skip
        self._lease_runs(answer.lease_s)
        self._apply(answer)
        self.state.save(self.state_file)
        return not fresh

    # ------------------------------------------------------------------ lease

    def _lease_runs(self, lease_s: float) -> None:
        """Runs started from now on stop by themselves ``lease_s`` after the last poll that saw
        them (an executor with a lease: local processes' watchdog, Slurm's wrapper), so they
        stop even if this agent is stopped or killed and does not come back."""
        if hasattr(self.executor, "lease_s"):
            self.executor.lease_s = lease_s

    def _in_lease(self, now: float) -> bool:
        last = self.state.last_contact
        return last is None or now - last <= self.state.lease_s

    def _expired(self, now: float) -> bool:
        return not self._in_lease(now) and any(self._going(r) for r in self.state.runs.values())

    def _going(self, run: HeldRun) -> bool:
        """Whether the run may still be going here (it has not ended as far as we know)."""
        if run.reported is not None:
            return False
        seen = self._seen.get(run.ref)
        return seen is None or seen.state not in ENDED

    def _fence(self, now: float) -> None:
        """Stop every run still going: the control plane may already have placed it again.

        Every run not known to have ended is cancelled, the newest first (a run still queued at
        the executor is cancelled before an older one's end frees its slots: no poll or cancel
        starts it meanwhile), and only then polled: a run that ended by itself before its
        cancel came (its exit recorded: it finished, or failed, on its own) keeps its end and
        is reported as it ended, for it must not be run again; the others are reported
        ``lost`` ("fenced"), as is a run its own lease stopped. A run whose cancel failed is
        left going (and fenced at the next round).
        """
        quiet = now - (self.state.last_contact or now)
        going = [r for r in self.state.runs.values() if self._going(r)]
        unstopped: set[str] = set()  # a cancel failed: tried again at the next round
        for run in reversed(going):
            if run.local_ref is not None:
                try:
                    self.executor.cancel(run.local_ref)
                except ExecutorError as exc:
                    log.error("could not stop run %s (%s): %s", run.ref, run.local_ref, exc)
                    unstopped.add(run.ref)
        self._poll()
        reason = (
            f"stopped by the agent of center {self.center_id}: no contact with the control "
            f"plane for {quiet:.0f} s (lease {self.state.lease_s:g} s)"
        )
        fenced = 0
        for run in going:
            seen = self._seen.get(run.ref) if run.local_ref is not None else None
            if seen is not None and seen.state in OWN_ENDS:
                continue  # it ended by itself: its end is reported as it is
            if run.ref in unstopped and (seen is None or seen.state not in ENDED):
                continue
            run.reported = {
                "state": JobState.LOST.value,
                "reason": reason,
                "exit_code": None,
                "cause": LEASE,
            }
            fenced += 1
        self.connected = False
        self.state.save(self.state_file)
        log.warning(
            "agent of center %s fenced %d runs: no contact with the control plane for %.0f s "
            "(lease %g s)", self.center_id, fenced, quiet, self.state.lease_s,
        )  # fmt: skip

    # ------------------------------------------------------------------ reports

    def _unseen(self) -> bool:
        return any(
            r.local_ref is not None and r.reported is None and r.ref not in self._seen
            for r in self.state.runs.values()
        )

    def _poll(self) -> None:
        refs = {
            r.local_ref: r.ref
            for r in self.state.runs.values()
            if r.local_ref is not None and r.reported is None
        }
        try:
            if refs:
                for local, status in self.executor.poll(list(refs)).items():
                    self._seen[refs[local]] = status
            cap = self.executor.capacity()
        except ExecutorError as exc:
            log.warning("center %s's executor does not answer: %s", self.center_id, exc)
            return
        self._capacity = CapacityReport(
            slots_cpus=cap.slots_cpus,
            slots_cards=cap.slots_cards,
            used_cpus=cap.used_cpus,
            used_cards=cap.used_cards,
            cards_by_model=dict(cap.cards_by_model),
        )

    def _request(self, fresh: bool) -> tuple[dict[str, Any], dict[str, str]]:
        """The sync's body and the digests of the log tails it carries."""
        budget = SYNC_LOG_BUDGET_BYTES
        digests: dict[str, str] = {}
        runs: list[RunReport] = []
        for run in self.state.runs.values():
            report = self._report(run)
            if fresh and run.local_ref is not None and run.reported is None:
                ended = report.state in ENDED
                text = self._log(run.local_ref)
                digest = hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()
                size = len(json.dumps(text))
                if digest != self._logs_sent.get(run.ref) and (ended or size <= budget):
                    report.log_tail = text
                    digests[run.ref] = digest
                    budget -= size
                if ended:
                    report.usage = self._usage(run.local_ref)
            runs.append(report)
        request = SyncRequest(
            version=__version__, every_s=self.every_s, capacity=self._capacity, runs=runs
        )
        body = request.model_dump(mode="json")
        for sent in body["runs"]:  # a run without a cause says none: what older control planes
            if sent["cause"] is None:  # read (they refuse a field they do not know)
                del sent["cause"]
        return body, digests

    def _report(self, run: HeldRun) -> RunReport:
        if run.reported is not None:
            return RunReport(
                ref=run.ref,
                state=JobState(run.reported["state"]),
                exit_code=run.reported.get("exit_code"),
                reason=run.reported.get("reason", ""),
                cause=run.reported.get("cause"),
            )
        seen = self._seen.get(run.ref)
        if run.local_ref is None or seen is None:
            return RunReport(ref=run.ref, state=JobState.SCHEDULED, reason="starting")
        return RunReport(
            ref=run.ref,
            state=seen.state,
            exit_code=seen.exit_code,
            started_at=seen.started_at,
            ended_at=seen.ended_at,
            reason=seen.reason[:4000],
            cause=seen.cause,
        )

    def _log(self, local_ref: str) -> str:
        try:
            text = self.executor.logs(local_ref, LOG_TAIL_BYTES)
        except ExecutorError:
            return ""
        data = text.encode("utf-8", errors="replace")
        return data[-LOG_TAIL_BYTES:].decode("utf-8", errors="ignore")

    def _usage(self, local_ref: str) -> UsageReport:
        try:
            usage = self.executor.reported_usage(local_ref)
        except ExecutorError as exc:
            return UsageReport(problems=[f"cannot read the run's usage: {exc}"[:1000]])
        problems = [p[:1000] for p in usage.problems[:25]]
        return UsageReport(tokens=usage.tokens, problems=problems)

    # ------------------------------------------------------------------ sync

    def _sync(self, body: dict[str, Any]) -> SyncAnswer | None:
        """The control plane's answer; None when no replica answers (logged once)."""
        try:
            try:
                return self.replicas.sync(body, self._seq)
            except Stale as exc:
                log.warning(
                    "agent of center %s numbers its syncs below the control plane's record "
                    "(its state file lost?): it goes on above %d (%s)",
                    self.center_id, exc.applied, exc,
                )  # fmt: skip
                self.state.seq_past(exc.applied)
                return self.replicas.sync(body, self._seq)
        except (Unsynced, Stale) as exc:
            self._lost(str(exc))
            return None

    def _seq(self) -> int:
        return self.state.next_seq(self.clock())

    def _lost(self, why: str) -> None:
        if self.connected:
            log.warning(
                "agent of center %s lost contact with the control plane (%s): its runs go on "
                "for at most %g s", self.center_id, why, self.state.lease_s,
            )  # fmt: skip
        elif why != self._why:  # said once, not at every attempt
            log.warning(
                "agent of center %s cannot sync with the control plane at %s",
                self.center_id, why,
            )  # fmt: skip
        self._why = why
        self.connected = False

    # ------------------------------------------------------------------ applying an answer

    def _apply(self, answer: SyncAnswer) -> None:
        fresh = [s for s in answer.start if s.ref not in self.state.runs]  # (once only)
        for start in fresh:
            self.state.runs[start.ref] = HeldRun(start.ref, start.submission, start.resume_from)
        if fresh:  # remembered before the executor is asked: one save for all of them
            self.state.save(self.state_file)
        self._submit_unstarted()
        for ref in answer.cancel:
            self._cancel(ref)
        for ref in answer.checkpoint:
            self._checkpoint(ref)
        for ref in answer.forget:
            self._forget(ref)

    def _submit_unstarted(self) -> None:
        """Runs remembered but not handed to the executor (just told to start them, it refused
        for now, or the agent died in between): hand them over (idempotent at the executor),
        oldest first, for at most :meth:`_hand_over_s` (at least one): the rest wait for the
        next step, so that a step that is told to start hundreds of runs still syncs within the
        lease (each is reported ``scheduled``, "starting", meanwhile)."""
        waiting = [
            r for r in self.state.runs.values() if r.local_ref is None and r.reported is None
        ]
        if not waiting:
            return
        deadline = time.monotonic() + self._hand_over_s()
        for i, run in enumerate(waiting):
            if i and time.monotonic() >= deadline:
                log.info(
                    "agent of center %s handed %d of %d runs to its executor this step: the "
                    "rest at the next", self.center_id, i, len(waiting),
                )  # fmt: skip
                break
            self._submit(run)
        self.state.save(self.state_file)  # (one save for all: each is a write of every run)

    def _hand_over_s(self) -> float:
        """How long one hand-over may take: :attr:`hand_over_s`, or a share of the lease."""
        if self.hand_over_s is not None:
            return self.hand_over_s
        return HAND_OVER_SHARE * self.state.lease_s

    def _submit(self, run: HeldRun) -> None:
        try:
            sub = submission_of(run.submission)
            if run.resume_from is not None:
                run.local_ref = self.executor.resume(sub, run.resume_from)
            else:
                run.local_ref = self.executor.submit(sub)
        except ExecutorError as exc:
            if "unreachable" in str(exc):
                log.warning("cannot start run %s yet: %s", run.ref, exc)
                return
            run.reported = {"state": "failed", "reason": f"refused here: {exc}", "exit_code": None}
        except ValueError as exc:
            run.reported = {"state": "failed", "reason": f"refused here: {exc}", "exit_code": None}
        else:
            log.info("started run %s as %s", run.ref, run.local_ref)

    def _cancel(self, ref: str) -> None:
        run = self.state.runs.get(ref)
        if run is None or (run.local_ref is None and run.reported is None):
            why = "cancelled before it started here"
            held = run or HeldRun(ref, {})
            held.reported = {"state": "cancelled", "reason": why, "exit_code": None}
            self.state.runs[ref] = held
            return
        if run.local_ref is not None and run.reported is None:
            try:
                self.executor.cancel(run.local_ref)
            except ExecutorError as exc:
                log.warning("could not cancel run %s: %s", ref, exc)

    def _checkpoint(self, ref: str) -> None:
        run = self.state.runs.get(ref)
        if run is None or run.local_ref is None or run.reported is not None:
            return
        try:
            self.executor.checkpoint(run.local_ref)
        except ExecutorError as exc:
            log.warning("could not checkpoint run %s: %s", ref, exc)

    def _forget(self, ref: str) -> None:
        run = self.state.runs.pop(ref, None)
        going = run is not None and self._going(run)
        self._seen.pop(ref, None)
        self._logs_sent.pop(ref, None)
        if run is not None and run.local_ref is not None and going:
            try:
                self.executor.cancel(run.local_ref)  # the control plane does not know it
            except ExecutorError as exc:
                log.warning("could not cancel run %s: %s", ref, exc)
