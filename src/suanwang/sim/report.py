"""A self-contained HTML report of a simulation run (opens offline: plotly.js is inlined once).

:func:`write_report` takes the per-policy :class:`~suanwang.sim.metrics.PolicyReport` objects
of one replay, the optional offline :class:`~suanwang.scheduling.bound.Bound`, and the network
and signals they ran on, and writes one HTML page with:

1. summary tables (money, energy, carbon; service quality) with cost / bound and cost relative
   to ``nearest``;
2. cost and carbon bars per policy against the bound;
3. network-wide green share (and facility energy) per hour;
4. card utilization per hub over time;
5. origin grid region -> executing hub flows (东数西算) as Sankey diagrams;
6. price and green-fraction heatmaps per center (China time, UTC+8);
7. a plain lon/lat scatter of the centers (no tile server or geo basemap download).

The page is built with plain string formatting; every text that comes from data is escaped.
Figure ``div`` ids are fixed, so the same inputs give the same bytes.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from numpy.typing import NDArray
from plotly.subplots import make_subplots

from suanwang import __version__
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.bound import Bound
from suanwang.sim.metrics import PolicyReport

Array = NDArray[np.float64]

CHINA_TZ = timezone(timedelta(hours=8), "UTC+8")
MAIN_POLICY = "suanwang"
BASELINE_POLICY = "nearest"
SIGNAL_DAYS = 7
TAIL_HOURS = 48

SECTIONS = (
    ("summary", "Summary"),
    ("cost-carbon", "Cost and carbon against the bound"),
    ("green", "Green share over time"),
    ("utilization", "Card utilization per hub"),
    ("flows", "Origin → executing hub flows (东数西算)"),
    ("signals", "Signals per center"),
    ("map", "Centers map"),
)

_POLICY_COLORS = {MAIN_POLICY: "#c8102e", BASELINE_POLICY: "#6b7280"}
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
)
_HUB_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
_NON_HUB_COLOR = "#9ca3af"
_BOUND_COLOR = "#111827"
_FONT = (
    '-apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "PingFang SC", '
    '"Noto Sans CJK SC", "Microsoft YaHei", sans-serif'
)
_TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": _FONT, "size": 12, "color": "#1f2937"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "colorway": list(_PALETTE),
        "hovermode": "closest",
        "hoverlabel": {"align": "left"},
        "margin": {"l": 60, "r": 30, "t": 50, "b": 50},
        "xaxis": {"gridcolor": "#e5e7eb", "linecolor": "#9ca3af", "zerolinecolor": "#d1d5db"},
        "yaxis": {"gridcolor": "#e5e7eb", "linecolor": "#9ca3af", "zerolinecolor": "#d1d5db"},
        "legend": {"bgcolor": "rgba(255,255,255,0.8)"},
    }
)
_CONFIG = {"displaylogo": False, "responsive": True}

_CSS = """
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --accent: #c8102e; }
* { box-sizing: border-box; }
body { margin: 0; font-family: FONT; color: var(--fg); background: #f9fafb;
       line-height: 1.5; font-size: 15px; }
header { background: #111827; color: #f9fafb; padding: 1.2rem 2rem; }
header h1 { margin: 0 0 .4rem; font-size: 1.6rem; }
header .meta { display: flex; flex-wrap: wrap; gap: .3rem 1.6rem; color: #d1d5db;
               font-size: .9rem; }
header .meta b { color: #fff; font-weight: 600; }
nav { background: #fff; border-bottom: 1px solid var(--line); padding: .5rem 2rem;
      position: sticky; top: 0; z-index: 10; font-size: .9rem; }
nav a { color: var(--fg); margin-right: 1.1rem; text-decoration: none; white-space: nowrap; }
nav a:hover { color: var(--accent); }
main { max-width: 1400px; margin: 0 auto; padding: 0 2rem 3rem; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
          padding: 1rem 1.4rem 1.4rem; margin-top: 1.4rem; }
h2 { font-size: 1.25rem; margin: .2rem 0 .6rem; border-left: 4px solid var(--accent);
     padding-left: .6rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
p.note { color: var(--muted); font-size: .88rem; margin: .3rem 0 .8rem; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: .9rem; width: 100%; }
th, td { padding: .35rem .7rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { background: #f3f4f6; text-align: right; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
td { text-align: right; font-variant-numeric: tabular-nums; }
tr.bound td { background: #f9fafb; font-style: italic; color: #374151; }
td.best { font-weight: 700; color: #047857; }
.swatch { display: inline-block; width: .75em; height: .75em; border-radius: 2px;
          margin-right: .4em; vertical-align: baseline; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
         gap: 1rem; }
.empty { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: .8rem; text-align: center; padding: 1.5rem; }
""".replace("FONT", _FONT)


# ----------------------------------------------------------------------------------- format
def _sig(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures (no digits dropped left of the point), with
    thousands separators and never an exponent."""
    if not math.isfinite(x):
        return "—"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    dec = max(0, digits - 1 - mag)
    return f"{x:,.{dec}f}"


def _pct(share: float) -> str:
    return "—" if not math.isfinite(share) else f"{_sig(100.0 * share)} %"


def _int(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{round(x):,}"


def _duration(s: float) -> str:
    if not math.isfinite(s):
        return "—"
    if abs(s) < 120:
        return f"{_sig(s)} s"
    if abs(s) < 7200:
        return f"{_sig(s / 60)} min"
    return f"{_sig(s / 3600)} h"


def _signed_pct(change: float) -> str:
    if not math.isfinite(change):
        return "—"
    text = _sig(100.0 * abs(change))
    if text == "0":
        return "±0 %"
    return f"{'+' if change > 0 else '−'}{text} %"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _metric(report: PolicyReport, key: str) -> float:
    value = report.metrics.get(key)
    return float("nan") if value is None else float(value)


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# ----------------------------------------------------------------------------------- helpers
def _policy_colors(reports: Sequence[PolicyReport]) -> dict[str, str]:
    colors: dict[str, str] = {}
    free = iter(_PALETTE * (1 + len(reports) // len(_PALETTE)))
    for r in reports:
        if r.name not in colors:
            colors[r.name] = _POLICY_COLORS.get(r.name) or next(free)
    return colors


def _main_report(reports: Sequence[PolicyReport]) -> PolicyReport | None:
    for r in reports:
        if r.name == MAIN_POLICY:
            return r
    return reports[0] if reports else None


def _time_labels(signals: Signals, hours: int) -> list[str]:
    start = signals.start.astimezone(CHINA_TZ)
    step = timedelta(seconds=signals.step_s)
    return [(start + i * step).strftime("%Y-%m-%d %H:%M") for i in range(hours)]


def _window_hours(signals: Signals, reports: Sequence[PolicyReport], arrival_days: float) -> int:
    """First ceil(arrival hours) + 48 hours, cut where network energy stops in every run."""
    per_hour = signals.step_s / 3600.0
    cap = math.ceil(arrival_days * 24 / per_hour) + math.ceil(TAIL_HOURS / per_hour)
    last = 0
    for r in reports:
        nz = np.flatnonzero(r.hourly_energy_kwh.sum(axis=0) > 0)
        if nz.size:
            last = max(last, int(nz[-1]) + 1)
    return max(1, min(signals.hours, cap, last if last else cap))


def _hub_groups(net: Network) -> tuple[list[str], list[str], NDArray[np.int64]]:
    """Labels, colors and each center's group index (hubs in scenario order, then non-hub)."""
    hubs = {h.id: h for h in net.scenario.hubs}
    labels = []
    for hid in net.hub_ids:
        h = hubs.get(hid)
        labels.append(f"{h.name_zh} {h.name}" if h is not None else hid)
    labels.append("non-hub")
    colors = [_HUB_PALETTE[i % len(_HUB_PALETTE)] for i in range(len(net.hub_ids))]
    colors.append(_NON_HUB_COLOR)
    group = np.where(net.center_hub >= 0, net.center_hub, len(net.hub_ids)).astype(np.int64)
    return labels, colors, group


def _center_cards(net: Network) -> Array:
    acc = ~net.pool_is_cpu
    cards: Array = np.bincount(
        net.pool_center[acc],
        weights=net.pool_capacity[acc].astype(np.float64),
        minlength=net.n_centers,
    ).astype(np.float64)
    return cards


class _Renderer:
    """Turns figures into HTML fragments; plotly.js is inlined with the first one only."""

    def __init__(self) -> None:
        self._js_included = False

    def __call__(self, fig: go.Figure, div_id: str) -> str:
        height = fig.layout.height or 450
        out = pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=not self._js_included,
            include_mathjax=False,
            config=_CONFIG,
            default_width="100%",
            default_height=f"{int(height)}px",
            div_id=div_id,
        )
        self._js_included = True
        return str(out)


def _figure(**layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template=_TEMPLATE, **layout)
    return fig


# ----------------------------------------------------------------------------------- sections
def _summary_html(reports: Sequence[PolicyReport], bound: Bound | None) -> str:
    colors = _policy_colors(reports)
    names = [r.name for r in reports]
    base = reports[names.index(BASELINE_POLICY)] if BASELINE_POLICY in names else None
    base_cost = _metric(base, "cost_cny") if base is not None else float("nan")
    has_bound = bound is not None and bound.cost_cny > 0
    has_base = base is not None and base_cost > 0

    head = [
        "Policy",
        "Cost (CNY)",
        "Energy cost (CNY)",
        "Transfer cost (CNY)",
        "Energy (kWh)",
        "Green share",
        "Carbon (t CO₂)",
    ]
    if has_bound:
        head.append("Cost / bound")
    if has_base:
        head.append("Cost vs nearest")
    costs = [_metric(r, "cost_cny") for r in reports]
    finite = [c for c in costs if math.isfinite(c)]
    best = min(finite) if finite else float("nan")

    def cost_cells(cost: float) -> list[str]:
        cells = []
        if has_bound:
            assert bound is not None
            cells.append(f"<td>{_sig(cost / bound.cost_cny)}×</td>")
        if has_base:
            cells.append(f"<td>{_signed_pct(cost / base_cost - 1.0)}</td>")
        return cells

    rows = []
    for r, cost in zip(reports, costs, strict=True):
        cls = ' class="best"' if cost == best and len(reports) > 1 else ""
        cells = [
            f'<td><span class="swatch" style="background:{colors[r.name]}"></span>'
            f"{_e(r.name)}</td>",
            f"<td{cls}>{_sig(cost)}</td>",
            f"<td>{_sig(_metric(r, 'energy_cost_cny'))}</td>",
            f"<td>{_sig(_metric(r, 'transfer_cost_cny'))}</td>",
            f"<td>{_sig(_metric(r, 'energy_kwh'))}</td>",
            f"<td>{_pct(_metric(r, 'green_share'))}</td>",
            f"<td>{_sig(_metric(r, 'carbon_t'))}</td>",
            *cost_cells(cost),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if bound is not None:
        cells = [
            "<td>offline bound (LP)</td>",
            f"<td>{_sig(bound.cost_cny)}</td>",
            f"<td>{_sig(bound.energy_cost_cny)}</td>",
            f"<td>{_sig(bound.transfer_cost_cny)}</td>",
            f"<td>{_sig(bound.energy_kwh)}</td>",
            "<td>—</td>",
            f"<td>{_sig(bound.carbon_t)}</td>",
            *cost_cells(bound.cost_cny),
        ]
        rows.append('<tr class="bound">' + "".join(cells) + "</tr>")
    money = _table(head, rows)

    shead = [
        "Policy",
        "Mean wait",
        "p95 wait",
        "Mean JCT",
        "Deadline misses",
        "Latency violations",
        "Completed",
        "Rejected",
        "Unfinished",
        "Migrations",
        "Card utilization",
        "Decisions / s",
    ]
    srows = []
    for r in reports:
        cells = [
            f'<td><span class="swatch" style="background:{colors[r.name]}"></span>'
            f"{_e(r.name)}</td>",
            f"<td>{_duration(_metric(r, 'mean_wait_s'))}</td>",
            f"<td>{_duration(_metric(r, 'p95_wait_s'))}</td>",
            f"<td>{_duration(_metric(r, 'mean_jct_s'))}</td>",
            *(
                f"<td>{_int(_metric(r, k))}</td>"
                for k in (
                    "deadline_misses",
                    "latency_violations",
                    "completed",
                    "rejected",
                    "unfinished",
                    "migrations",
                )
            ),
            f"<td>{_pct(_metric(r, 'utilization'))}</td>",
            f"<td>{_int(_metric(r, 'decisions_per_s'))}</td>",
        ]
        srows.append("<tr>" + "".join(cells) + "</tr>")
    service = _table(shead, srows)

    notes = []
    if bound is not None:
        notes.append(
            "The offline bound is an LP relaxation with perfect knowledge of the whole horizon "
            f"({bound.bucket_h} h buckets, {bound.variables:,} variables, "
            f"{bound.classes:,} job classes, {bound.jobs:,} jobs): no policy can run the same "
            "jobs for less. Its carbon is indicative (it minimises cost, not carbon)."
        )
    else:
        notes.append("No offline bound was computed for this run.")
    if has_base:
        notes.append("Cost vs nearest is the change against the nearest-center baseline.")
    notes.append(
        "Card utilization is busy card-hours over card capacity during the arrival window."
    )
    return (
        '<h3>Cost, energy and carbon</h3><div class="table-wrap">'
        + money
        + '</div><h3>Service quality</h3><div class="table-wrap">'
        + service
        + "</div>"
        + "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    )


def _paid_html(reports: Sequence[PolicyReport]) -> str:
    """With providers' offers (trading): what consumers paid at offer vs posted prices."""
    with_offers = [r for r in reports if "paid_offer_cny" in r.metrics]
    if not with_offers:
        return ""
    rows = []
    for r in with_offers:
        offer, posted = _metric(r, "paid_offer_cny"), _metric(r, "paid_posted_cny")
        rows.append(
            f"<tr><td>{_e(r.name)}</td><td>{_sig(offer)}</td><td>{_sig(posted)}</td>"
            f"<td>{_sig(posted - offer)}</td><td>{_int(_metric(r, 'jobs_under_offers'))}</td></tr>"
        )
    head = ["policy", "at offer prices (CNY)", "at posted prices (CNY)", "saved", "jobs"]
    return (
        '<h3>Paid by consumers (providers\' offers)</h3><div class="table-wrap">'
        + _table(head, rows)
        + '</div><p class="note">Each completed job at its start hour\'s price per SCU: an '
        "offer's where its units had room, else the posted price.</p>"
    )


def _table(head: Sequence[str], rows: Sequence[str]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cost_carbon_fig(reports: Sequence[PolicyReport], bound: Bound | None) -> go.Figure:
    names = [r.name for r in reports]
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Cost (CNY)", "Carbon (t CO₂)"),
        horizontal_spacing=0.12,
    )
    fig.update_layout(template=_TEMPLATE, barmode="stack", height=420)
    energy = np.array([_metric(r, "energy_cost_cny") for r in reports])
    transfer = np.array([_metric(r, "transfer_cost_cny") for r in reports])
    carbon = np.array([_metric(r, "carbon_t") for r in reports])
    total = energy + transfer
    fig.add_trace(
        go.Bar(
            x=names,
            y=energy,
            name="energy cost",
            marker_color="#2563eb",
            hovertemplate="%{x}<br>energy cost %{y:,.0f} CNY<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=names,
            y=transfer,
            name="transfer cost",
            marker_color="#93c5fd",
            text=[_sig(t) for t in total],
            textposition="outside",
            hovertemplate="%{x}<br>transfer cost %{y:,.0f} CNY<extra></extra>",
        ),
        row=1,
        col=1,
    )
    colors = _policy_colors(reports)
    fig.add_trace(
        go.Bar(
            x=names,
            y=carbon,
            name="carbon",
            marker_color=[colors[n] for n in names],
            text=[_sig(c) for c in carbon],
            textposition="outside",
            showlegend=False,
            hovertemplate="%{x}<br>%{y:,.3f} t CO₂<extra></extra>",
        ),
        row=1,
        col=2,
    )
    if bound is not None:
        for col, value in ((1, bound.cost_cny), (2, bound.carbon_t)):
            fig.add_hline(
                y=value,
                line={"color": _BOUND_COLOR, "dash": "dash", "width": 2},
                annotation_text=f"bound {_sig(value)}",
                annotation_position="top right",
                row=1,
                col=col,
            )
    top_cost = max([*total[np.isfinite(total)], bound.cost_cny if bound else 0.0, 0.0])
    top_carbon = max([*carbon[np.isfinite(carbon)], bound.carbon_t if bound else 0.0, 0.0])
    fig.update_yaxes(range=[0, 1.15 * top_cost or 1.0], row=1, col=1)
    fig.update_yaxes(range=[0, 1.15 * top_carbon or 1.0], row=1, col=2)
    fig.update_layout(legend={"orientation": "h", "y": -0.12})
    return fig


def _green_fig(
    signals: Signals, reports: Sequence[PolicyReport], hours: int, arrival_days: float
) -> go.Figure:
    x = _time_labels(signals, hours)
    colors = _policy_colors(reports)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.62, 0.38],
        vertical_spacing=0.06,
        subplot_titles=("Green share of facility energy (%)", "Facility energy (kWh per hour)"),
    )
    fig.update_layout(template=_TEMPLATE, height=560, hovermode="x unified")
    for r in reports:
        e = r.hourly_energy_kwh.sum(axis=0)[:hours]
        g = r.hourly_green_kwh.sum(axis=0)[:hours]
        share = np.full(hours, np.nan)
        np.divide(g, e, out=share, where=e > 0)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=100.0 * share,
                name=r.name,
                legendgroup=r.name,
                mode="lines",
                line={"color": colors[r.name], "width": 2},
                hovertemplate="%{y:.3g} %",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=e,
                name=r.name,
                legendgroup=r.name,
                showlegend=False,
                mode="lines",
                line={"color": colors[r.name], "width": 1.5},
                hovertemplate="%{y:,.0f} kWh",
            ),
            row=2,
            col=1,
        )
    arrival_h = round(arrival_days * 24 * 3600 / signals.step_s)
    if 0 < arrival_h < hours:
        fig.add_vline(x=x[arrival_h], line={"color": "#6b7280", "dash": "dot"})
    fig.update_yaxes(range=[0, 100], row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="China time (UTC+8)", row=2, col=1)
    return fig


def _utilization_fig(
    net: Network, signals: Signals, reports: Sequence[PolicyReport], hours: int
) -> go.Figure | None:
    labels, hub_colors, center_group = _hub_groups(net)
    acc = np.flatnonzero(~net.pool_is_cpu)
    if acc.size == 0 or not reports:
        return None
    pool_group = center_group[net.pool_center[acc]]
    cap = np.bincount(
        pool_group, weights=net.pool_capacity[acc].astype(np.float64), minlength=len(labels)
    )
    groups = [g for g in range(len(labels)) if cap[g] > 0]
    x = _time_labels(signals, hours)
    main = _main_report(reports)
    fig = _figure(
        height=480,
        yaxis={"title": {"text": "busy cards / cards (%)"}, "rangemode": "tozero"},
        xaxis={"title": {"text": "China time (UTC+8)"}},
        hovermode="x unified",
    )
    per_policy = len(groups) + 1
    for r in reports:
        busy = r.hourly_busy_units[acc, :hours]
        by_group = np.zeros((len(labels), busy.shape[1]))
        np.add.at(by_group, pool_group, busy)
        visible = r is main
        for g in groups:
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=100.0 * by_group[g] / cap[g],
                    name=f"{labels[g]} ({int(cap[g]):,} cards)",
                    mode="lines",
                    line={"color": hub_colors[g], "width": 1.6},
                    visible=visible,
                    hovertemplate="%{y:.3g} %",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=100.0 * by_group.sum(axis=0) / cap.sum(),
                name=f"all cards ({int(cap.sum()):,})",
                mode="lines",
                line={"color": _BOUND_COLOR, "width": 2.5, "dash": "dash"},
                visible=visible,
                hovertemplate="%{y:.3g} %",
            )
        )
    if len(reports) > 1:
        n = len(reports) * per_policy
        buttons = []
        for i, r in enumerate(reports):
            vis = [i * per_policy <= k < (i + 1) * per_policy for k in range(n)]
            buttons.append({"label": r.name, "method": "update", "args": [{"visible": vis}]})
        fig.update_layout(
            updatemenus=[
                {
                    "buttons": buttons,
                    "active": reports.index(main) if main is not None else 0,
                    "x": 0.0,
                    "xanchor": "left",
                    "y": 1.12,
                    "yanchor": "bottom",
                    "showactive": True,
                }
            ],
            margin={"t": 80},
        )
    return fig


def _sankey_fig(net: Network, report: PolicyReport) -> go.Figure:
    labels, hub_colors, group = _hub_groups(net)
    by_region = np.zeros((len(net.regions), net.n_centers))
    np.add.at(by_region, net.place_region, report.flows_scu)
    flows = np.zeros((len(net.regions), len(labels)))
    np.add.at(flows.T, group, by_region.T)
    total = float(report.flows_scu.sum())
    same = net.center_region[None, :] == np.arange(len(net.regions))[:, None]
    crossed = float(by_region[~same].sum()) / total if total > 0 else float("nan")
    rows = [i for i in range(len(net.regions)) if flows[i].sum() > 0]
    cols = [j for j in range(len(labels)) if flows[:, j].sum() > 0]
    node_labels = [f"{net.regions[i]} grid" for i in rows] + [labels[j] for j in cols]
    node_colors = ["#64748b"] * len(rows) + [hub_colors[j] for j in cols]
    src, dst, val, link_colors = [], [], [], []
    for a, i in enumerate(rows):
        for b, j in enumerate(cols):
            if flows[i, j] > 0:
                src.append(a)
                dst.append(len(rows) + b)
                val.append(float(flows[i, j]))
                link_colors.append(_rgba(hub_colors[j], 0.4))
    title = (
        f"<b>{_e(report.name)}</b> — {_sig(total)} SCU placed, "
        f"{_pct(crossed)} executed outside the origin's grid region"
    )
    fig = _figure(height=460, title={"text": title, "x": 0.01, "font": {"size": 13}})
    fig.add_trace(
        go.Sankey(
            arrangement="snap",
            valueformat=",.0f",
            valuesuffix=" SCU",
            node={
                "label": node_labels,
                "color": node_colors,
                "pad": 12,
                "thickness": 14,
                "line": {"width": 0},
            },
            link={"source": src, "target": dst, "value": val, "color": link_colors},
        )
    )
    fig.update_layout(margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def _center_order(net: Network) -> NDArray[np.int64]:
    lon = np.array([c.lon for c in net.scenario.centers])
    order: NDArray[np.int64] = np.argsort(-lon, kind="stable").astype(np.int64)
    return order


def _signal_fig(
    net: Network,
    signals: Signals,
    values: Array,
    title: str,
    colorscale: str,
    zrange: tuple[float, float] | None,
    fmt: str,
    unit: str,
) -> go.Figure:
    hours = min(signals.hours, math.ceil(SIGNAL_DAYS * 24 * 3600 / signals.step_s))
    order = _center_order(net)
    hubs = {h.id: h.name_zh for h in net.scenario.hubs}
    ylabels = []
    for i in order:
        c = net.scenario.centers[int(i)]
        ylabels.append(f"{c.id} · {hubs.get(c.hub or '', 'non-hub')}")
    z = values[order, :hours]
    heat: dict[str, Any] = {
        "z": z,
        "x": _time_labels(signals, hours),
        "y": ylabels,
        "colorscale": colorscale,
        "colorbar": {"title": {"text": unit}, "thickness": 12},
        "hovertemplate": "%{y}<br>%{x}<br>" + f"%{{z:{fmt}}} {unit}<extra></extra>",
    }
    if zrange is not None:
        heat["zmin"], heat["zmax"] = zrange
    fig = _figure(
        height=140 + 15 * net.n_centers,
        title={"text": title, "x": 0.01},
        xaxis={"title": {"text": "China time (UTC+8)"}},
        # the left margin grows to the longest row label (a fixed one cut them to a character)
        yaxis={"tickfont": {"size": 10}, "autorange": "reversed", "automargin": True},
        margin={"l": 10, "r": 10, "t": 50, "b": 50},
    )
    fig.add_trace(go.Heatmap(**heat))
    return fig


def _map_fig(net: Network, main: PolicyReport | None) -> go.Figure:
    sc = net.scenario
    cards = _center_cards(net)
    lat = np.array([c.lat for c in sc.centers])
    lon = np.array([c.lon for c in sc.centers])
    if main is not None:
        e = main.hourly_energy_kwh.sum(axis=1)
        g = main.hourly_green_kwh.sum(axis=1)
    else:
        e = np.zeros(net.n_centers)
        g = np.zeros(net.n_centers)
    share = np.full(net.n_centers, np.nan)
    np.divide(g, e, out=share, where=e > 0)
    top = float(cards.max()) if cards.size and cards.max() > 0 else 1.0
    size = 7.0 + 33.0 * np.sqrt(cards / top)
    hubs = {h.id: h for h in sc.hubs}
    text = []
    for i, c in enumerate(sc.centers):
        hub = hubs.get(c.hub or "")
        text.append(
            f"<b>{_e(c.name_zh)}</b><br>{_e(c.name)}<br>"
            f"hub: {_e(hub.name_zh + ' ' + hub.name if hub else 'non-hub')}<br>"
            f"{int(cards[i]):,} cards · energy {_sig(float(e[i]))} kWh<br>"
            f"green share {_pct(float(share[i]))}"
        )
    used = np.isfinite(share)
    run = main.name if main is not None else "no run"
    fig = _figure(
        height=620,
        xaxis={"title": {"text": "longitude (°E)"}, "zeroline": False},
        yaxis={
            "title": {"text": "latitude (°N)"},
            "zeroline": False,
            "scaleanchor": "x",
            "scaleratio": 1.0 / math.cos(math.radians(float(np.mean(lat)) if lat.size else 35)),
        },
        legend={"orientation": "h", "y": -0.12},
    )
    fig.add_trace(
        go.Scatter(
            x=[p.lon for p in sc.provinces],
            y=[p.lat for p in sc.provinces],
            mode="markers",
            name="province capitals (job origins)",
            marker={"size": 5, "color": "#cbd5e1", "symbol": "circle"},
            text=[f"{_e(p.name_zh)} {_e(p.name)} · {_e(p.grid_region)} grid" for p in sc.provinces],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[h.lon for h in sc.hubs],
            y=[h.lat for h in sc.hubs],
            mode="text",
            name="hubs",
            text=[_e(h.name_zh) for h in sc.hubs],
            textposition="top center",
            textfont={"size": 13, "color": "#374151"},
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=lon[~used],
            y=lat[~used],
            mode="markers",
            name="centers without energy use",
            marker={
                "size": size[~used],
                "color": "rgba(0,0,0,0)",
                "line": {"color": "#9ca3af", "width": 1.5},
            },
            text=[t for t, u in zip(text, used, strict=True) if not u],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=lon[used],
            y=lat[used],
            mode="markers",
            name=f"centers (green share, {run} run)",
            marker={
                "size": size[used],
                "color": 100.0 * share[used],
                "cmin": 0,
                "cmax": 100,
                "colorscale": "Greens",
                "line": {"color": "#1f2937", "width": 1},
                "colorbar": {"title": {"text": "green %"}, "thickness": 12},
                "opacity": 0.9,
            },
            text=[t for t, u in zip(text, used, strict=True) if u],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    return fig


# ----------------------------------------------------------------------------------- page
def write_report(
    path: Path,
    *,
    scenario_name: str,
    net: Network,
    signals: Signals,
    reports: Sequence[PolicyReport],
    bound: Bound | None,
    arrival_days: float,
    title: str = "suanwang simulation report",
) -> Path:
    """Write the simulation report as one self-contained HTML file and return its path."""
    path = Path(path)
    render = _Renderer()
    main = _main_report(reports)
    hours = _window_hours(signals, reports, arrival_days)
    start = signals.start.astimezone(CHINA_TZ)
    end = start + timedelta(seconds=signals.horizon_s)
    if reports:
        m = reports[0].metrics
        n_jobs = int(sum(int(m.get(k, 0)) for k in ("completed", "rejected", "unfinished")))
        jobs_text = f"{n_jobs:,}"
    else:
        jobs_text = f"{bound.jobs:,}" if bound is not None else "—"
    cards = int(_center_cards(net).sum())
    meta = [
        ("Scenario", scenario_name),
        ("Policies", ", ".join(r.name for r in reports) or "none"),
        ("Jobs", jobs_text),
        ("Arrivals", f"{arrival_days:g} days"),
        (
            "Horizon",
            f"{signals.horizon_s / 3600:,g} h = {signals.horizon_s / 86400:,g} days "
            f"({start:%Y-%m-%d %H:%M} → "
            f"{end:%Y-%m-%d %H:%M} China time)",
        ),
        ("Network", f"{net.n_centers} centers, {len(net.hub_ids)} hubs, {cards:,} cards"),
    ]
    body: dict[str, str] = {}
    body["summary"] = (
        _summary_html(reports, bound) if reports else '<p class="empty">No policy was run.</p>'
    )
    body["summary"] += _paid_html(reports)
    if reports:
        body["cost-carbon"] = (
            '<p class="note">Cost is energy plus data transfer; the dashed line is the offline '
            "bound.</p>" + render(_cost_carbon_fig(reports, bound), "fig-cost-carbon")
        )
        body["green"] = (
            '<p class="note">Network-wide green share of facility energy per hour (gaps: no '
            f"energy used), first {hours} h; the dotted line marks the end of arrivals.</p>"
            + render(_green_fig(signals, reports, hours, arrival_days), "fig-green")
        )
        util = _utilization_fig(net, signals, reports, hours)
        body["utilization"] = (
            '<p class="note">Busy accelerator cards over installed cards per hub, first '
            f"{hours} h, for the <b>{_e(main.name if main else '')}</b> run; use the menu to "
            "switch policy.</p>" + render(util, "fig-utilization")
            if util is not None
            else '<p class="empty">The network has no accelerator cards.</p>'
        )
        ordered = sorted(
            reports,
            key=lambda r: (r.name != BASELINE_POLICY, r.name != MAIN_POLICY),
        )
        sankeys = "".join(
            f"<div>{render(_sankey_fig(net, r), f'fig-flows-{i}')}</div>"
            for i, r in enumerate(ordered)
        )
        body["flows"] = (
            '<p class="note">Work placed (SCU) from each origin grid region to the hub that '
            "ran it. East-to-west arrows are 东数西算 (East Data, West Computing).</p>"
            f'<div class="grid2">{sankeys}</div>'
        )
    else:
        for key in ("cost-carbon", "green", "utilization", "flows"):
            body[key] = '<p class="empty">No policy was run.</p>'
    body["signals"] = (
        '<p class="note">Realised hourly signals for the first '
        f"{SIGNAL_DAYS} days, centers ordered east (top) to west.</p>"
        + render(
            _signal_fig(
                net,
                signals,
                signals.price_cny_per_kwh,
                "Facility electricity price (CNY/kWh)",
                "YlOrRd",
                None,
                ".3f",
                "CNY/kWh",
            ),
            "fig-price",
        )
        + render(
            _signal_fig(
                net,
                signals,
                100.0 * signals.green_fraction,
                "Green fraction of supplied energy (%)",
                "Greens",
                (0.0, 100.0),
                ".3g",
                "%",
            ),
            "fig-green-fraction",
        )
    )
    body["map"] = (
        '<p class="note">Centers by longitude and latitude (no basemap), sized by cards and '
        f"coloured by green share of the <b>{_e(main.name if main else '')}</b> run.</p>"
        + render(_map_fig(net, main), "fig-map")
    )

    nav = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name in SECTIONS)
    sections = "".join(
        f'<section id="{sid}"><h2>{_e(name)}</h2>{body[sid]}</section>' for sid, name in SECTIONS
    )
    meta_html = "".join(f"<span>{_e(k)}: <b>{_e(v)}</b></span>" for k, v in meta)
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="suanwang {_e(__version__)}">\n'
        f"<title>{_e(title)} — {_e(scenario_name)}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<header><h1>{_e(title)}</h1><div class="meta">{meta_html}</div></header>\n'
        f"<nav>{nav}</nav>\n<main>\n{sections}\n</main>\n"
        f"<footer>suanwang {_e(__version__)} · self-contained report, works offline</footer>\n"
        "</body>\n</html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
