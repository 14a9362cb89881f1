"""The sharing section of a governed run (docs/governance.md): each tenant's usage against its
entitlement hour by hour, waits by class, preemptions per hour, and the per-tenant tables.

Shown only when a policy ran with governance (``simulate --tenants``): its
:class:`~suanwang.sim.fairness.SharingSeries` (``PolicyReport.sharing``) gives the hourly
series, its ``PolicyReport.governance`` (the JSON's numbers) the tables and the class waits.
A ``<policy>/fifo`` run's bars are hatched."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from suanwang.core.signals import Signals
from suanwang.sim.fairness import CLASSES, SharingSeries
from suanwang.sim.metrics import PolicyReport
from suanwang.sim.report.data import CHINA_TZ, Array, main_report
from suanwang.sim.report.style import TEMPLATE, figure, policy_colors
from suanwang.sim.report.tables import table
from suanwang.sim.report.text import duration, esc, integer, pct, sig

SECTION = ("sharing", "Sharing among tenants")
FIFO = "/fifo"
HOUR_MS = 3_600_000.0
#: usage / entitlement at the top of the colour scale (more is drawn as this)
TOP_FRACTION = 2.0
#: white (nothing) → blue (its entitlement) → dark blue (twice it and more)
USAGE_SCALE = [[0.0, "#ffffff"], [0.5, "#60a5fa"], [1.0, "#1e3a8a"]]
BACKLOG_COLOR = "#c8102e"


def governed(reports: Sequence[PolicyReport]) -> list[PolicyReport]:
    """The reports of governed runs (they carry the series and the metrics)."""
    return [r for r in reports if r.sharing is not None and r.governance is not None]


def hour_axis(signals: Signals, hours: int) -> Array:
    """Hours from the run's start as plotly date values: milliseconds of China wall time."""
    start = signals.start.astimezone(CHINA_TZ).replace(tzinfo=None)
    t0 = (start - datetime(1970, 1, 1)).total_seconds() * 1000.0
    out: Array = t0 + HOUR_MS * np.arange(hours, dtype=np.float64)
    return out


def _series(r: PolicyReport) -> SharingSeries:
    assert r.sharing is not None
    return r.sharing


def _gov(r: PolicyReport) -> dict[str, Any]:
    assert r.governance is not None
    return r.governance


def _jain(fairness: dict[str, Any]) -> str:
    """Jain's index, or — when no tenant was backlogged a whole hour (no index to take)."""
    return f"{fairness['jain_index']:.3f}" if fairness["backlogged_hours"] else "—"


def _min_entitled(fairness: dict[str, Any]) -> str:
    return pct(float(fairness["min_entitled_fraction"])) if fairness["backlogged_hours"] else "—"


def usage_fig(r: PolicyReport, x: Array, arrival_ms: float | None) -> go.Figure:
    """Tenants x hours of usage / entitlement, backlogged hours dotted."""
    s = _series(r)
    n = x.size
    labels = [esc(t) for t in s.tenants]
    fairness = _gov(r)["fairness"]
    title = (
        f"<b>{esc(r.name)}</b> — Jain {_jain(fairness)}, "
        f"min entitled fraction {_min_entitled(fairness)}"
    )
    fig = figure(
        height=min(150 + 16 * len(labels), 1600),
        title={"text": title, "x": 0.01, "font": {"size": 13}},
        xaxis={
            "type": "date",
            "title": {"text": "China time (UTC+8)"},
            "hoverformat": "%Y-%m-%d %H:%M",
            "range": [float(x[0]) - HOUR_MS / 2, float(x[-1]) + HOUR_MS / 2],
            "automargin": True,
        },
        yaxis={
            "type": "category",
            "showgrid": False,
            "tickfont": {"size": 10},
            "autorange": "reversed",
            "automargin": True,
        },
        legend={"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
        margin={"l": 10, "r": 10, "t": 60, "b": 50},
    )
    fig.add_trace(
        go.Heatmap(
            z=s.entitled_fraction()[:, :n],
            x=x,
            y=labels,
            customdata=s.usage_scu[:, :n],
            zmin=0.0,
            zmax=TOP_FRACTION,
            colorscale=USAGE_SCALE,
            colorbar={
                "title": {"text": "usage /<br>entitlement"},
                "thickness": 12,
                "tickvals": [0.0, 0.5, 1.0, 1.5, TOP_FRACTION],
                "ticktext": ["0", "0.5", "1", "1.5", f"≥ {TOP_FRACTION:g}"],
            },
            hoverongaps=False,
            hovertemplate="<b>%{y}</b><br>%{x}<br>%{customdata:,.3g} SCU/h, "
            "%{z:.0%} of its entitlement<extra></extra>",
            name="usage / entitlement",
            showlegend=False,
        )
    )
    tenant, hour = np.nonzero(s.backlogged[:, :n])
    fig.add_trace(
        go.Scatter(
            x=x[hour],
            y=[labels[i] for i in tenant.tolist()],
            mode="markers",
            name="backlogged (work waiting all hour)",
            marker={"size": 4, "color": BACKLOG_COLOR, "symbol": "circle"},
            hoverinfo="skip",
            showlegend=True,
        )
    )
    if arrival_ms is not None:
        fig.add_vline(x=arrival_ms, line={"color": "#6b7280", "dash": "dot"})
    return fig


def waits_fig(runs: Sequence[PolicyReport], colors: dict[str, str]) -> go.Figure:
    """p50 and p95 waits per class, a bar per policy."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Median wait (min)", "p95 wait (min)"),
        horizontal_spacing=0.1,
    )
    fig.update_layout(
        template=TEMPLATE, barmode="group", height=420, legend={"orientation": "h", "y": -0.15}
    )
    for r in runs:
        classes = _gov(r)["classes"]
        fifo = r.name.endswith(FIFO)
        for col, key in ((1, "wait_p50_s"), (2, "wait_p95_s")):
            waits = [float(classes[c][key]) for c in CLASSES]
            hover = [
                f"{c}: {duration(w)} ({integer(classes[c]['jobs'])} jobs)"
                if classes[c]["jobs"]
                else f"{c}: no jobs"
                for c, w in zip(CLASSES, waits, strict=True)
            ]
            fig.add_trace(
                go.Bar(
                    x=list(CLASSES),
                    y=[w / 60.0 for w in waits],
                    name=esc(r.name),
                    legendgroup=r.name,
                    showlegend=col == 1,
                    marker={
                        "color": colors[r.name],
                        "pattern": {"shape": "/" if fifo else ""},
                    },
                    hovertext=hover,
                    hovertemplate="%{hovertext}<extra>%{fullData.name}</extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_yaxes(rangemode="tozero")
    return fig


def preemptions_fig(
    runs: Sequence[PolicyReport], colors: dict[str, str], x: Array, arrival_ms: float | None
) -> go.Figure | None:
    """Preemptions and the work they lost per hour, a line per policy (None: none at all)."""
    n = x.size
    runs = [r for r in runs if _series(r).fair]  # the fifo comparison never preempts
    if not any(_series(r).preemptions[:n].any() for r in runs):
        return None
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.55, 0.45],
        vertical_spacing=0.08,
        subplot_titles=("Preemptions per hour", "Work lost (SCU per hour)"),
    )
    fig.update_layout(template=TEMPLATE, height=480, hovermode="x unified")
    for r in runs:
        s = _series(r)
        for row, y, fmt in ((1, s.preemptions[:n], ",d"), (2, s.lost_work_scu[:n], ",.3g")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    name=esc(r.name),
                    legendgroup=r.name,
                    showlegend=row == 1,
                    mode="lines",
                    line={"color": colors[r.name], "width": 1.8, "shape": "hv"},
                    hovertemplate=f"%{{y:{fmt}}}",
                ),
                row=row,
                col=1,
            )
    if arrival_ms is not None:
        fig.add_vline(x=arrival_ms, line={"color": "#6b7280", "dash": "dot"})
    fig.update_xaxes(type="date", hoverformat="%Y-%m-%d %H:%M")
    fig.update_xaxes(title_text="China time (UTC+8)", row=2, col=1)
    fig.update_yaxes(rangemode="tozero")
    top = max(int(_series(r).preemptions[:n].max()) for r in runs)
    if top < 5:  # whole preemptions, not 0.2 of one
        fig.update_yaxes(dtick=1, row=1, col=1)
    return fig


def fairness_table(runs: Sequence[PolicyReport], colors: dict[str, str]) -> str:
    head = [
        "Policy",
        "Jain index",
        "Min entitled fraction",
        "Backlogged hours",
        "Asks met within a round",
        "Ask met, p95",
        "Preemptions",
        "Lost work (SCU)",
        "Lost work share",
        "urgent p95 wait",
        "batch p95 wait",
    ]
    rows = []
    for r in runs:
        m = _gov(r)
        f = m["fairness"]
        cells = [
            f'<td><span class="swatch" style="background:{colors[r.name]}"></span>'
            f"{esc(r.name)}</td>",
            f"<td>{_jain(f)}</td>",
            f"<td>{_min_entitled(f)}</td>",
            f"<td>{integer(f['backlogged_hours'])}</td>",
            f"<td>{pct(float(f['asks_met_within_round']))} of {integer(f['asks'])}</td>",
            f"<td>{duration(float(f['ask_met_p95_s']))}</td>",
            f"<td>{integer(m['preemptions'])}</td>",
            f"<td>{sig(float(m['lost_work_scu']))}</td>",
            f"<td>{pct(float(m['lost_work_share']))}</td>",
            f"<td>{duration(float(m['classes']['urgent']['wait_p95_s']))}</td>",
            f"<td>{duration(float(m['classes']['batch']['wait_p95_s']))}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return table(head, rows)


def tenants_table(r: PolicyReport) -> str:
    s = _series(r)
    tenants = _gov(r)["tenants"]
    backlogged = s.backlogged[:, : s.arrival_hours].sum(axis=1)
    head = [
        "Tenant",
        "Entitlement (SCU/h)",
        "Entitled (SCU)",
        "Used (SCU)",
        "Used / entitled",
        "Share of usage",
        "Backlogged hours",
        "p50 wait",
        "p95 wait",
        "Preempted",
        "Lost work (SCU)",
    ]
    rows = []
    for i, t in enumerate(s.tenants):
        row = tenants[t]
        entitled = float(row["entitlement_scu"])
        used = float(row["usage_scu"])
        cells = [
            f"<td>{esc(t)}</td>",
            f"<td>{sig(float(s.entitlement_scu_per_h[i]))}</td>",
            f"<td>{sig(entitled)}</td>",
            f"<td>{sig(used)}</td>",
            f"<td>{pct(used / entitled) if entitled > 0 else '—'}</td>",
            f"<td>{pct(float(row['share_of_usage']))}</td>",
            f"<td>{integer(float(backlogged[i]))}</td>",
            f"<td>{duration(float(row['wait_p50_s']))}</td>",
            f"<td>{duration(float(row['wait_p95_s']))}</td>",
            f"<td>{integer(row['preempted'])}</td>",
            f"<td>{sig(float(row['lost_work_scu']))}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return table(head, rows)


def sharing_html(
    reports: Sequence[PolicyReport],
    signals: Signals,
    hours: int,
    render: Callable[[go.Figure, str], str],
) -> str | None:
    """The section's body, or None when no policy ran with governance (no section)."""
    runs = governed(reports)
    if not runs:
        return None
    colors = policy_colors(reports)
    n = max(1, min(hours, min(_series(r).hours for r in runs)))
    x = hour_axis(signals, n)
    arrival_h = min(_series(r).arrival_hours for r in runs)
    arrival_ms = float(x[0] + HOUR_MS * arrival_h) if arrival_h < n else None
    main = main_report(runs)
    open_names = {main.name, main.name.removesuffix(FIFO) + FIFO} if main is not None else set()
    heatmaps = "".join(
        render(usage_fig(r, x, arrival_ms), f"fig-sharing-usage-{i}") for i, r in enumerate(runs)
    )
    preempt = preemptions_fig(runs, colors, x, arrival_ms)
    details = "".join(
        f"<details{' open' if r.name in open_names else ''}><summary>{esc(r.name)}: "
        f"{len(_series(r).tenants):,} tenants</summary>"
        f'<div class="table-wrap">{tenants_table(r)}</div></details>'
        for r in runs
    )
    dotted = " (the dotted line: the end of arrivals)" if arrival_ms is not None else ""
    return (
        '<p class="note">Who ran when capacity was short (docs/governance.md). A tenant\'s '
        "entitlement is its nominal quota (SCU/h); its usage in an hour is the SCU its runs "
        "delivered (lost work included). It is backlogged in an hour when it had work waiting "
        "(any class but preemptible) at the end of every scheduling round of it. Jain's index "
        "compares the backlogged tenants' usage / entitlement hour by hour (1: all got the same "
        "fraction); the min entitled fraction is the least a backlogged tenant got in any hour "
        f"(capped at 1). Both, and the tables, cover the {arrival_h} h of arrivals; the "
        f"charts show the first {n} h{dotted}. A "
        "<i>/fifo</i> run is the same engine without quotas, oldest first, measured against "
        "the same entitlements.</p>"
        '<h3>Fairness per policy</h3><div class="table-wrap">'
        + fairness_table(runs, colors)
        + "</div><h3>Usage against entitlement, per tenant and hour</h3>"
        '<p class="note">Colour: the tenant\'s usage over its entitlement (white: nothing, '
        "blue: its entitlement, dark: twice it or more, borrowed); a red dot: backlogged that "
        "hour. A dot on a pale cell is a tenant that wanted more than it got.</p>"
        + heatmaps
        + "<h3>Waits by class</h3>"
        '<p class="note">From submission to first start, jobs that started; hatched: the '
        "fifo run.</p>"
        + render(waits_fig(runs, colors), "fig-sharing-waits")
        + "<h3>Preemptions</h3>"
        + (
            '<p class="note">Runs stopped to make room for a job with a better claim, by the hour '
            "they were stopped, and the work they lost (a checkpointable run loses none). The "
            "fifo runs never preempt.</p>" + render(preempt, "fig-sharing-preemptions")
            if preempt is not None
            else f'<p class="empty">No run preempted anything in the first {n} h.</p>'
        )
        + "<h3>Per tenant</h3>"
        + details
    )
