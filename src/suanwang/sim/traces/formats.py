"""Each format's row → :class:`~suanwang.core.jobs.Job` rule (docs/formats-traces.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

from suanwang.core.hardware import Accelerator
from suanwang.core.jobs import ANY_ACCELERATOR, DEFAULT_TENANT, Job, JobKind
from suanwang.sim.traces.rows import Context, Row, stable_uniform

PHILLY_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PHILLY_INTERACTIVE_BELOW_S = 15 * 60
PHILLY_MAX_GPUS = 128
_ALIBABA_QOS = ("LS", "Burstable", "BE", "Guaranteed")
_ALIBABA_GPU_KIND = {
    "LS": JobKind.INFERENCE,
    "Burstable": JobKind.INTERACTIVE,
    "BE": JobKind.TRAINING,
    "Guaranteed": JobKind.TRAINING,
}
_EPOCH = datetime(1970, 1, 1)


# --------------------------------------------------------------------------- suanwang


def suanwang_row(row: Row, ctx: Context) -> None:
    net = ctx.net
    line = row.line
    job_id = row.text("job_id") or f"job-{line}"
    row.unique_id("job_id", job_id)
    submit = row.number("submit_time_s", required=True)
    duration = row.number("duration_s", required=True, positive=True)
    gpus_in = row.integer("gpus")
    gpus = 1 if gpus_in is None else gpus_in
    cpus_in = row.integer("cpus")
    cpus = cpus_in if cpus_in is not None else (8 * gpus if gpus > 0 else 8)
    if gpus == 0 and cpus_in == 0:
        row.bad("cpus", "a CPU-only job (gpus 0) needs at least 1 CPU core")
    mem = row.number("mem_gb")
    kind = row.kind("kind") or (JobKind.TRAINING if gpus > 0 else JobKind.ANALYTICS)
    origin = row.origin("origin")

    acc = row.text("accelerator") or ANY_ACCELERATOR
    acc_spec: Accelerator | None = None
    if acc != ANY_ACCELERATOR:
        if acc not in net.known_models:
            row.bad("accelerator", f"unknown accelerator {acc!r}")
        else:
            acc_spec = net.scenario.catalog.get(acc)
            if acc_spec.is_cpu and gpus > 0:
                row.bad("accelerator", f"{acc!r} is a CPU model but gpus is {gpus} (use gpus 0)")
            elif not acc_spec.is_cpu and gpus == 0:
                row.bad("accelerator", f"{acc!r} is an accelerator card but gpus is 0")

    stacks_s = row.text("stacks")
    if stacks_s is None:
        if gpus == 0:
            stacks = frozenset({"cpu"})
        elif acc_spec is not None:
            stacks = frozenset({acc_spec.stack})
        else:
            stacks = frozenset({"cuda"})
    else:
        parts = [s.strip() for s in stacks_s.split("|")]
        stacks = frozenset(parts)
        unknown = sorted(s for s in stacks if s and s not in net.known_stacks)
        if "" in stacks:
            row.bad("stacks", f"empty stack name in {stacks_s!r} (separate stacks with '|')")
        elif unknown:
            known = ", ".join(sorted(net.known_stacks))
            row.bad("stacks", f"unknown stack {', '.join(unknown)} (known: {known})")
        elif acc_spec is not None and gpus > 0 and acc_spec.stack not in stacks:
            row.bad("stacks", f"do not include {acc_spec.stack!r}, the stack of {acc!r}")

    deadline = row.number("deadline_s")
    data_gb = row.number("data_gb")
    ckpt = row.boolean("checkpointable")
    tenant = row.text("tenant") or DEFAULT_TENANT
    priority = row.priority("priority")
    if gpus == 0 and ctx.cpu_model is None:
        row.bad("gpus", "the scenario has no CPU model, so CPU-only jobs (gpus 0) cannot run")
    if row.failed or submit is None or duration is None:
        return
    work = ctx.gpu_work(duration, gpus, kind) if gpus > 0 else ctx.cpu_work(duration, cpus)
    if origin is None:
        origin = ctx.draw_origin("suanwang", "origin", ctx.seed, job_id)
    ctx.keep(
        line,
        Job(
            job_id=job_id,
            submit_s=submit,
            kind=kind,
            origin=origin,
            cards=gpus,
            cpus=cpus,
            mem_gb=mem if mem is not None else 4.0 * cpus,
            accelerator=acc,
            stacks=stacks,
            work_scu=work,
            deadline_s=deadline,
            data_gb=data_gb or 0.0,
            checkpointable=bool(ckpt),
            tenant=tenant,
            priority=priority,
            labels={"trace": "suanwang", "line": str(line)},
        ),
    )


# --------------------------------------------------------------------------- philly


def philly_row(row: Row, ctx: Context) -> None:
    line = row.line
    ts = row.text("timestamp", required=True)
    submit: float | None = None
    if ts is not None:
        try:
            submit = (datetime.strptime(ts, PHILLY_TIME_FORMAT) - _EPOCH).total_seconds()
        except ValueError:
            row.bad("timestamp", f"not a time of the form YYYY-MM-DD HH:MM:SS: {ts!r}")
    duration = row.number("duration", required=True)
    gpus = row.integer("num_gpus", required=True, lo=1, hi=PHILLY_MAX_GPUS)
    row.number("gpu_time")  # not used, but must be a number when given
    cluster = row.text("cluster", required=True)
    if row.failed or submit is None or duration is None or gpus is None or cluster is None:
        return
    if duration == 0:
        ctx.skip("zero_duration")
        return
    job_id = f"philly-{line}"
    if duration < PHILLY_INTERACTIVE_BELOW_S:
        kind = JobKind.INTERACTIVE
    elif gpus >= 8 or stable_uniform("philly", "kind", ctx.seed, job_id) < 0.5:
        kind = JobKind.TRAINING
    else:
        kind = JobKind.FINETUNE
    ctx.keep(
        line,
        Job(
            job_id=job_id,
            submit_s=submit,
            kind=kind,
            origin=ctx.draw_origin("philly", "vc", ctx.seed, cluster),
            cards=gpus,
            cpus=8 * gpus,
            mem_gb=32.0 * gpus,
            accelerator=ANY_ACCELERATOR,
            stacks=frozenset({"cuda"}),
            work_scu=ctx.gpu_work(duration, gpus, kind),
            tenant=cluster,
            labels={"trace": "philly", "line": str(line), "vc": cluster},
        ),
    )


# --------------------------------------------------------------------------- alibaba


def alibaba_row(row: Row, ctx: Context) -> None:
    line = row.line
    name = row.text("name", required=True)
    if name is not None:
        row.unique_id("name", name)
    cpu_milli = row.number("cpu_milli", required=True)
    memory_mib = row.number("memory_mib", required=True)
    num_gpu = row.integer("num_gpu", required=True)
    gpu_milli = row.integer("gpu_milli", required=True, hi=1000)
    if num_gpu is not None and gpu_milli is not None:
        if num_gpu > 0 and gpu_milli == 0:
            row.bad("gpu_milli", f"is 0 but num_gpu is {num_gpu}")
        elif num_gpu == 0 and gpu_milli > 0:
            row.bad("gpu_milli", f"is {gpu_milli} but num_gpu is 0")
    gpu_spec = row.text("gpu_spec")
    qos = row.text("qos", required=True)
    if qos is not None and qos not in _ALIBABA_QOS:
        row.bad("qos", f"unknown qos {qos!r} (expected one of {', '.join(_ALIBABA_QOS)})")
    phase = row.text("pod_phase")
    created = row.number("creation_time", required=True)
    deleted = row.number("deletion_time")
    scheduled = row.number("scheduled_time")
    if (
        row.failed
        or name is None
        or cpu_milli is None
        or memory_mib is None
        or num_gpu is None
        or gpu_milli is None
        or qos is None
        or created is None
    ):
        return
    if scheduled is None:
        ctx.skip("never_scheduled")
        return
    if deleted is None:
        ctx.skip("no_deletion_time")
        return
    duration = deleted - scheduled
    if duration <= 0:
        ctx.skip("non_positive_duration")
        return
    cpus = max(1, math.ceil(cpu_milli / 1000.0))
    if num_gpu > 0:
        kind = _ALIBABA_GPU_KIND[qos]
        stacks = frozenset({"cuda"})
        work = ctx.gpu_work(duration, num_gpu, kind)
    else:
        if ctx.cpu_model is None:
            row.bad("num_gpu", "the scenario has no CPU model, so CPU-only pods cannot run")
            return
        kind = JobKind.ANALYTICS
        stacks = frozenset({"cpu"})
        work = ctx.cpu_work(duration, cpus)
    labels = {"trace": "alibaba-gpu-2023", "line": str(line), "qos": qos}
    labels["gpu_milli"] = str(gpu_milli)
    if phase is not None:
        labels["pod_phase"] = phase
    if gpu_spec is not None:
        labels["gpu_spec"] = gpu_spec
    ctx.keep(
        line,
        Job(
            job_id=name,
            submit_s=created,
            kind=kind,
            origin=ctx.draw_origin("alibaba-gpu-2023", "origin", ctx.seed, name),
            cards=num_gpu,
            cpus=cpus,
            mem_gb=memory_mib / 1024.0,
            accelerator=ANY_ACCELERATOR,
            stacks=stacks,
            work_scu=work,
            labels=labels,
        ),
    )


#: The row parser of each format of :data:`~suanwang.sim.traces.columns.TRACE_FORMATS`.
PARSERS: dict[str, Callable[[Row, Context], None]] = {
    "suanwang": suanwang_row,
    "philly": philly_row,
    "alibaba-gpu-2023": alibaba_row,
}
