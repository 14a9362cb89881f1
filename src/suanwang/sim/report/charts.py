"""The run-wide charts: cost and carbon against the bounds, green share over time, card
utilization per hub, and origin → executing hub flows (Sankey)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.sim.metrics import PolicyReport
from suanwang.sim.report.bounds import Bounds
from suanwang.sim.report.data import hub_groups, main_report, metric, time_labels
from suanwang.sim.report.style import (
    BOUND_COLOR,
    LOOSE_BOUND_COLOR,
    TEMPLATE,
    figure,
    policy_colors,
)
from suanwang.sim.report.text import esc, pct, rgba, sig


def cost_carbon_fig(reports: Sequence[PolicyReport], bounds: Bounds) -> go.Figure:
    """Cost (energy + transfer) and carbon bars per policy, and a line per bound computed: the
    tightest dashed and dark, the other dotted and grey; the higher line labelled above it."""
    names = [r.name for r in reports]
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Cost (CNY)", "Carbon (t CO₂)"),
        horizontal_spacing=0.12,
    )
    fig.update_layout(template=TEMPLATE, barmode="stack", height=420)
    energy = np.array([metric(r, "energy_cost_cny") for r in reports])
    transfer = np.array([metric(r, "transfer_cost_cny") for r in reports])
    carbon = np.array([metric(r, "carbon_t") for r in reports])
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
            text=[sig(t) for t in total],
            textposition="outside",
            hovertemplate="%{x}<br>transfer cost %{y:,.0f} CNY<extra></extra>",
        ),
        row=1,
        col=1,
    )
    colors = policy_colors(reports)
    fig.add_trace(
        go.Bar(
            x=names,
            y=carbon,
            name="carbon",
            marker_color=[colors[n] for n in names],
            text=[sig(c) for c in carbon],
            textposition="outside",
            showlegend=False,
            hovertemplate="%{x}<br>%{y:,.3f} t CO₂<extra></extra>",
        ),
        row=1,
        col=2,
    )
    for col, key in ((1, "cost_cny"), (2, "carbon_t")):
        values = [float(getattr(shown.bound, key)) for shown in bounds.shown]
        for i, (shown, value) in enumerate(zip(bounds.shown, values, strict=True)):
            color = BOUND_COLOR if i == 0 else LOOSE_BOUND_COLOR
            highest = value == max(values)  # labels away from each other
            fig.add_hline(
                y=value,
                line={"color": color, "dash": "dash" if i == 0 else "dot", "width": 2},
                annotation_text=f"{shown.label} {sig(value)}",
                annotation_position="top right" if highest else "bottom right",
                annotation_font_color=color,
                annotation_bgcolor="rgba(255,255,255,0.85)",
                row=1,
                col=col,
            )
    top_cost = max([*total[np.isfinite(total)], *(s.bound.cost_cny for s in bounds.shown), 0.0])
    top_carbon = max([*carbon[np.isfinite(carbon)], *(s.bound.carbon_t for s in bounds.shown), 0.0])
    fig.update_yaxes(range=[0, 1.15 * top_cost or 1.0], row=1, col=1)
    fig.update_yaxes(range=[0, 1.15 * top_carbon or 1.0], row=1, col=2)
    fig.update_layout(legend={"orientation": "h", "y": -0.12})
    return fig


def green_fig(
    signals: Signals, reports: Sequence[PolicyReport], hours: int, arrival_days: float
) -> go.Figure:
    x = time_labels(signals, hours)
    colors = policy_colors(reports)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.62, 0.38],
        vertical_spacing=0.06,
        subplot_titles=("Green share of facility energy (%)", "Facility energy (kWh per hour)"),
    )
    fig.update_layout(template=TEMPLATE, height=560, hovermode="x unified")
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


def utilization_fig(
    net: Network, signals: Signals, reports: Sequence[PolicyReport], hours: int
) -> go.Figure | None:
    labels, hub_colors, center_group = hub_groups(net)
    acc = np.flatnonzero(~net.pool_is_cpu)
    if acc.size == 0 or not reports:
        return None
    pool_group = center_group[net.pool_center[acc]]
    cap = np.bincount(
        pool_group, weights=net.pool_capacity[acc].astype(np.float64), minlength=len(labels)
    )
    groups = [g for g in range(len(labels)) if cap[g] > 0]
    x = time_labels(signals, hours)
    main = main_report(reports)
    fig = figure(
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
                line={"color": BOUND_COLOR, "width": 2.5, "dash": "dash"},
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


def sankey_fig(net: Network, report: PolicyReport) -> go.Figure:
    labels, hub_colors, group = hub_groups(net)
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
                link_colors.append(rgba(hub_colors[j], 0.4))
    title = (
        f"<b>{esc(report.name)}</b> — {sig(total)} SCU placed, "
        f"{pct(crossed)} executed outside the origin's grid region"
    )
    fig = figure(height=460, title={"text": title, "x": 0.01, "font": {"size": 13}})
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
