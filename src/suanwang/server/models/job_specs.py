"""What a stored job means to the engine: its work in SCU, the engine's :class:`Job` for it,
and what in a spec the served scenario does not know or cannot combine (:func:`check_spec`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from suanwang.core.hardware import Catalog
from suanwang.core.jobs import ANY_ACCELERATOR, DEFAULT_TENANT, Job
from suanwang.core.network import Network, UnknownName
from suanwang.server.database.models import JobRow
from suanwang.server.schemas import JobSpec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """Something a spec names that the scenario does not have. ``loc`` is within the body."""

    loc: tuple[str | int, ...]
    msg: str
    input: Any


def work_scu(spec: JobSpec, catalog: Catalog) -> float:
    """Work of a spec in SCU (:meth:`Catalog.work_scu`: ``duration_s`` on the reference chip).
    Raises :class:`UnknownName` for a CPU job when the catalog has no CPU model."""
    r = spec.resources
    try:
        return catalog.work_scu(spec.duration_s / 3600.0, r.cards, r.cpus, spec.job_kind.precision)
    except ValueError as exc:
        raise UnknownName(str(exc)) from None


def spec_to_job(
    spec: JobSpec,
    net: Network,
    *,
    job_id: str,
    submit_s: float,
    labels: dict[str, str],
    tenant: str = DEFAULT_TENANT,
) -> Job:
    r = spec.resources
    return Job(
        job_id=job_id,
        submit_s=submit_s,
        kind=spec.job_kind,
        origin=spec.origin,
        cards=r.cards,
        cpus=r.cpus,
        mem_gb=r.mem_gb,
        accelerator=r.accelerator,
        stacks=spec.job_stacks,
        work_scu=work_scu(spec, net.scenario.catalog),
        deadline_s=spec.deadline_s,
        latency_ms=spec.latency_ms,
        data_gb=spec.data_gb,
        checkpointable=spec.checkpointable,
        tenant=tenant,
        priority=spec.priority,
        labels=labels,
    )


def to_core_job(row: JobRow, net: Network, *, t0: datetime = _EPOCH) -> Job:
    """The engine's :class:`~suanwang.core.jobs.Job` for a stored job.

    ``submit_s`` counts seconds from ``t0`` (default: the Unix epoch) to ``submitted_at``;
    its tenant is the row's tenant id.
    """
    return engine_job(row.spec, net, job_id=row.id, tenant=row.tenant_id, name=row.name,
                      submitted_at=row.submitted_at, t0=t0)  # fmt: skip


def engine_job(
    spec: dict[str, Any],
    net: Network,
    *,
    job_id: str,
    tenant: str,
    name: str,
    submitted_at: datetime,
    t0: datetime = _EPOCH,
) -> Job:
    """:func:`to_core_job` from a job's columns (a stored ``spec``, its tenant id...)."""
    submit_s = (submitted_at - t0).total_seconds()
    labels = {"tenant": tenant, "name": name}
    return spec_to_job(
        JobSpec.model_validate(spec),
        net,
        job_id=job_id,
        submit_s=submit_s,
        labels=labels,
        tenant=tenant,
    )


def check_spec(spec: JobSpec, net: Network, *, network_allowed: bool) -> list[SpecProblem]:
    """Everything in ``spec`` that the scenario of ``net`` does not know or cannot combine,
    and ``network`` where the platform gives jobs none (``network_allowed`` false).

    Names are checked one by one (to report every problem with its field) and the assembled
    job once more with :meth:`Network.check_job`, the engine's own check.
    """
    catalog = net.scenario.catalog
    r = spec.resources
    out: list[SpecProblem] = []
    if spec.network and not network_allowed:
        msg = (
            "this platform gives jobs no network access (its operator has not allowed it: "
            "suanwang serve --allow-job-network)"
        )
        out.append(SpecProblem(("network",), msg, spec.network))
    try:
        net.place(spec.origin)
    except UnknownName as exc:
        msg = f"{exc}: not a province or city of scenario {net.scenario.name!r}"
        out.append(SpecProblem(("origin",), msg, spec.origin))
    acc = None
    if r.accelerator != ANY_ACCELERATOR:
        if r.accelerator not in net.known_models:
            known = ", ".join(sorted(net.known_models))
            msg = f"unknown accelerator {r.accelerator!r} (known: {ANY_ACCELERATOR}, {known})"
            out.append(SpecProblem(("resources", "accelerator"), msg, r.accelerator))
        else:
            acc = catalog.get(r.accelerator)
            if acc.is_cpu and r.cards > 0:
                msg = f"{acc.model!r} is a CPU model but resources.cards is {r.cards} (use 0)"
                out.append(SpecProblem(("resources", "accelerator"), msg, r.accelerator))
            elif not acc.is_cpu and r.cards == 0:
                msg = f"{acc.model!r} is an accelerator card but resources.cards is 0"
                out.append(SpecProblem(("resources", "accelerator"), msg, r.accelerator))
    stacks = sorted(spec.job_stacks)
    known_stacks = ", ".join(sorted(net.known_stacks))
    for i, stack in enumerate(stacks):
        if stack not in net.known_stacks:
            msg = f"unknown software stack {stack!r} (known: {known_stacks})"
            out.append(SpecProblem(("stacks", i), msg, stack))
    if acc is not None and not acc.is_cpu and r.cards > 0 and acc.stack not in stacks:
        msg = f"stacks {stacks} do not include {acc.stack!r}, the stack of {acc.model!r}"
        out.append(SpecProblem(("stacks",), msg, stacks))
    if r.cards == 0 and not any(a.is_cpu for a in catalog.accelerators):
        msg = "the scenario has no CPU model, so CPU-only jobs (count 0) cannot run"
        out.append(SpecProblem(("resources", "cards"), msg, r.cards))
    if out:
        return out
    try:
        net.check_job(spec_to_job(spec, net, job_id="check", submit_s=0.0, labels={}))
    except UnknownName as exc:
        out.append(SpecProblem((), str(exc), None))
    return out
