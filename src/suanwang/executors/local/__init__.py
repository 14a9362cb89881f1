"""Local executor: real processes on this machine, per-center slot limits, restart-safe.

Everything an executor knows lives in files, so a new :class:`LocalExecutor` on the same root
(after the server was killed with ``-9`` and restarted) re-attaches: running jobs keep running,
finished ones keep their exit codes, queued ones start when slots free. Nothing is lost or run
twice. Linux only (``/proc``).

Layout under ``root/<center>/``::

    .lock                   flock held by every operation (several executors may share a root)
    .active/<run>           index of runs not finished yet (the only runs a poll looks at)
    <run>/submission.json   the submission, written once (first submit of a job id wins)
    <run>/command.sh        the command or script; run.sh: the wrapper that runs it
    <run>/queued            waiting for slots: {"seq", "token"}; FIFO by seq, no backfill
    <run>/launched          the same file, renamed from ``queued`` when the run took its slots
    <run>/pid               {"pid", "pgid", "start_ticks"} of the wrapper
    <run>/started_at        ISO time; stdout.log: stdout and stderr; work/: the job's cwd
    <run>/exit_code         written by the wrapper (tmp + mv, atomic) when the job ends
    <run>/checkpoint/       $SUANWANG_CHECKPOINT_DIR (unless the submission names one)
    <run>/usage.jsonl       $SUANWANG_USAGE_FILE: the tokens the run reports it served
    <run>/checkpoint_requested, <run>/cancelled   markers (time of the request)
    <run>/lease, <run>/fenced   with ``lease_s`` (an agent's executor): the lease every poll
                            that sees the run alive renews, and the mark of its watchdog
                            when it stopped the run because the lease ran out (``lost``)
    <run>/limits            (sandboxed runs) the limits it runs under, for its failure's reason
    <run>/final.json        the terminal status, written once

A run's id is its job id; a resumed run's is ``<job id>.resume-<hash of the checkpoint dir>``.
A reference is ``<center>/<run>``.

Processes. A run is started through a short-lived ``sh`` in a new session that puts the wrapper
in the background, prints its pid and exits (we reap it at once), so the job is never our child:
a crash of the server neither kills it nor leaves zombies of ours, and a new executor is in the
same position as the old one. The wrapper is identified by ``(pid, start time)`` from
``/proc/<pid>/stat``; every process of the run carries ``SUANWANG_RUN_TOKEN`` in its environment,
which finds a run's processes when the server crashed between starting it and writing ``pid``,
and keeps us from signalling a process group that is no longer ours. When the wrapper ends, what
is left of its process group is killed (as Slurm does at the end of a job). A sandboxed run's
processes are also in a cgroup of its own where the host has one
(:mod:`~suanwang.executors.local.cgroups`); what is left in it is killed when the run is
finalized, and the cgroup removed.
"""

from suanwang.executors.local.executor import INHERITED_ENV, LocalExecutor
from suanwang.executors.local.processes import ENV_RUN_TOKEN
from suanwang.executors.local.sandbox import Sandbox, SandboxUnavailable, SharedUser

__all__ = [
    "ENV_RUN_TOKEN",
    "INHERITED_ENV",
    "LocalExecutor",
    "Sandbox",
    "SandboxUnavailable",
    "SharedUser",
]
