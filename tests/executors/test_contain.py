"""The sandbox's view (``bwrap_args``): the order of its binds, where one lies in another."""

from __future__ import annotations

from pathlib import Path

from suanwang.executors.contain import bwrap_args


def _mounts(args: list[str]) -> list[tuple[str, str]]:
    """The binds and tmpfs mounts under ``/scratch`` (not the system's), in order."""
    ops = ("--bind", "--ro-bind", "--tmpfs")
    return [
        (a, args[i + 1])
        for i, a in enumerate(args)
        if a in ops and args[i + 1].startswith("/scratch")
    ]


def test_a_hidden_directory_is_emptied_after_what_holds_it_and_before_what_lies_in_it() -> None:
    """A shared directory that holds the runs: the runs are hidden, the job's own bound back."""
    run = Path("/scratch/jobs/run")
    args = bwrap_args(
        work=run / "work",
        writable=[run / "work", Path("/scratch")],
        readable=[run / "job"],
        user="sw-a",
        network=False,
        hidden=[Path("/scratch/jobs")],
    )
    assert _mounts(args) == [
        ("--bind", "/scratch"),
        ("--tmpfs", "/scratch/jobs"),
        ("--bind", "/scratch/jobs/run/work"),
        ("--ro-bind", "/scratch/jobs/run/job"),
    ]
    at = len(args) - 1 - args[::-1].index("/scratch/jobs")  # its last mention: the tmpfs
    assert args[at - 3 : at] == ["--perms", "0711", "--tmpfs"]
    # the same directory bound and hidden: hidden
    same = bwrap_args(work=run, writable=[run], readable=[], user="sw-a", network=False,
                      hidden=[run])  # fmt: skip
    assert _mounts(same) == [("--bind", str(run)), ("--tmpfs", str(run))]
