"""Per-center figures: the signal heatmaps (price, green fraction) and the map of centers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from numpy.typing import NDArray

from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.sim.metrics import PolicyReport
from suanwang.sim.report.data import SIGNAL_DAYS, Array, center_cards, time_labels
from suanwang.sim.report.style import figure
from suanwang.sim.report.text import esc, pct, sig


def center_order(net: Network) -> NDArray[np.int64]:
    lon = np.array([c.lon for c in net.scenario.centers])
    order: NDArray[np.int64] = np.argsort(-lon, kind="stable").astype(np.int64)
    return order


def signal_fig(
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
    order = center_order(net)
    hubs = {h.id: h.name_zh for h in net.scenario.hubs}
    ylabels = []
    for i in order:
        c = net.scenario.centers[int(i)]
        ylabels.append(f"{c.id} · {hubs.get(c.hub or '', 'non-hub')}")
    z = values[order, :hours]
    heat: dict[str, Any] = {
        "z": z,
        "x": time_labels(signals, hours),
        "y": ylabels,
        "colorscale": colorscale,
        "colorbar": {"title": {"text": unit}, "thickness": 12},
        "hovertemplate": "%{y}<br>%{x}<br>" + f"%{{z:{fmt}}} {unit}<extra></extra>",
    }
    if zrange is not None:
        heat["zmin"], heat["zmax"] = zrange
    fig = figure(
        height=140 + 15 * net.n_centers,
        title={"text": title, "x": 0.01},
        xaxis={"title": {"text": "China time (UTC+8)"}},
        # the left margin grows to the longest row label (a fixed one cut them to a character)
        yaxis={"tickfont": {"size": 10}, "autorange": "reversed", "automargin": True},
        margin={"l": 10, "r": 10, "t": 50, "b": 50},
    )
    fig.add_trace(go.Heatmap(**heat))
    return fig


def map_fig(net: Network, main: PolicyReport | None) -> go.Figure:
    sc = net.scenario
    cards = center_cards(net)
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
            f"<b>{esc(c.name_zh)}</b><br>{esc(c.name)}<br>"
            f"hub: {esc(hub.name_zh + ' ' + hub.name if hub else 'non-hub')}<br>"
            f"{int(cards[i]):,} cards · energy {sig(float(e[i]))} kWh<br>"
            f"green share {pct(float(share[i]))}"
        )
    used = np.isfinite(share)
    run = main.name if main is not None else "no run"
    fig = figure(
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
            text=[
                f"{esc(p.name_zh)} {esc(p.name)} · {esc(p.grid_region)} grid" for p in sc.provinces
            ],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[h.lon for h in sc.hubs],
            y=[h.lat for h in sc.hubs],
            mode="text",
            name="hubs",
            text=[esc(h.name_zh) for h in sc.hubs],
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
