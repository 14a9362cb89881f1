"""The report's look: policy and hub colours, the plotly template, the page's CSS, and the
renderer that turns figures into HTML (plotly.js inlined with the first one only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from suanwang.sim.metrics import PolicyReport

MAIN_POLICY = "suanwang"
BASELINE_POLICY = "nearest"

POLICY_COLORS = {MAIN_POLICY: "#c8102e", BASELINE_POLICY: "#6b7280"}
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
)
HUB_PALETTE = (
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
NON_HUB_COLOR = "#9ca3af"
BOUND_COLOR = "#111827"  # the tightest bound; any other, lighter
LOOSE_BOUND_COLOR = "#6b7280"
FONT = (
    '-apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "PingFang SC", '
    '"Noto Sans CJK SC", "Microsoft YaHei", sans-serif'
)
TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": FONT, "size": 12, "color": "#1f2937"},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "colorway": list(PALETTE),
        "hovermode": "closest",
        "hoverlabel": {"align": "left"},
        "margin": {"l": 60, "r": 30, "t": 50, "b": 50},
        "xaxis": {"gridcolor": "#e5e7eb", "linecolor": "#9ca3af", "zerolinecolor": "#d1d5db"},
        "yaxis": {"gridcolor": "#e5e7eb", "linecolor": "#9ca3af", "zerolinecolor": "#d1d5db"},
        "legend": {"bgcolor": "rgba(255,255,255,0.8)"},
    }
)
CONFIG = {"displaylogo": False, "responsive": True}

CSS = """
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
details { margin: .3rem 0; }
details summary { cursor: pointer; font-weight: 600; padding: .2rem 0; }
footer { color: var(--muted); font-size: .8rem; text-align: center; padding: 1.5rem; }
""".replace("FONT", FONT)


def policy_colors(reports: Sequence[PolicyReport]) -> dict[str, str]:
    colors: dict[str, str] = {}
    free = iter(PALETTE * (1 + len(reports) // len(PALETTE)))
    for r in reports:
        if r.name not in colors:
            colors[r.name] = POLICY_COLORS.get(r.name) or next(free)
    return colors


class Renderer:
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
            config=CONFIG,
            default_width="100%",
            default_height=f"{int(height)}px",
            div_id=div_id,
        )
        self._js_included = True
        return str(out)


def figure(**layout: Any) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(template=TEMPLATE, **layout)
    return fig
