"""The page: sections, header, navigation, and :func:`write_report` that assembles them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from suanwang import __version__
from suanwang.core.network import Network
from suanwang.core.signals import Signals
from suanwang.scheduling.bound import Bound
from suanwang.sim.metrics import PolicyReport
from suanwang.sim.report.bounds import lines_note, shown_bounds
from suanwang.sim.report.centers import map_fig, signal_fig
from suanwang.sim.report.charts import cost_carbon_fig, green_fig, sankey_fig, utilization_fig
from suanwang.sim.report.data import CHINA_TZ, SIGNAL_DAYS, center_cards, main_report, window_hours
from suanwang.sim.report.sharing import SECTION as SHARING
from suanwang.sim.report.sharing import sharing_html
from suanwang.sim.report.style import BASELINE_POLICY, CSS, MAIN_POLICY, Renderer
from suanwang.sim.report.tables import paid_html, summary_html
from suanwang.sim.report.text import esc

SECTIONS = (
    ("summary", "Summary"),
    ("cost-carbon", "Cost and carbon against the bound"),
    ("green", "Green share over time"),
    ("utilization", "Card utilization per hub"),
    ("flows", "Origin → executing hub flows (东数西算)"),
    ("signals", "Signals per center"),
    ("map", "Centers map"),
)


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
    tight: Bound | None = None,
    tight_error: str | None = None,
) -> Path:
    """Write the simulation report as one self-contained HTML file and return its path.

    ``bound`` is the relaxed offline bound, ``tight`` the non-preemptive one and
    ``tight_error`` why that one was asked for and not solved (each None when not computed):
    the report shows each bound computed and compares costs against the tightest."""
    path = Path(path)
    bounds = shown_bounds(bound, tight, tight_error)
    top = bounds.tightest
    render = Renderer()
    main = main_report(reports)
    hours = window_hours(signals, reports, arrival_days)
    start = signals.start.astimezone(CHINA_TZ)
    end = start + timedelta(seconds=signals.horizon_s)
    if reports:
        m = reports[0].metrics
        ends = ("completed", "rejected", "expired", "unfinished")
        n_jobs = int(sum(int(m.get(k, 0)) for k in ends))
        jobs_text = f"{n_jobs:,}"
    else:
        jobs_text = f"{top.bound.jobs:,}" if top is not None else "—"
    cards = int(center_cards(net).sum())
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
        summary_html(reports, bounds) if reports else '<p class="empty">No policy was run.</p>'
    )
    body["summary"] += paid_html(reports)
    sharing = sharing_html(reports, signals, hours, render)  # governed runs only
    sections: tuple[tuple[str, str], ...] = (
        SECTIONS if sharing is None else (SECTIONS[0], SHARING, *SECTIONS[1:])
    )
    if sharing is not None:
        body[SHARING[0]] = sharing
    if reports:
        body["cost-carbon"] = (
            f'<p class="note">Cost is energy plus data transfer; {esc(lines_note(bounds))}</p>'
            + render(cost_carbon_fig(reports, bounds), "fig-cost-carbon")
        )
        body["green"] = (
            '<p class="note">Network-wide green share of facility energy per hour (gaps: no '
            f"energy used), first {hours} h; the dotted line marks the end of arrivals.</p>"
            + render(green_fig(signals, reports, hours, arrival_days), "fig-green")
        )
        util = utilization_fig(net, signals, reports, hours)
        body["utilization"] = (
            '<p class="note">Busy accelerator cards over installed cards per hub, first '
            f"{hours} h, for the <b>{esc(main.name if main else '')}</b> run; use the menu to "
            "switch policy.</p>" + render(util, "fig-utilization")
            if util is not None
            else '<p class="empty">The network has no accelerator cards.</p>'
        )
        ordered = sorted(
            reports,
            key=lambda r: (r.name != BASELINE_POLICY, r.name != MAIN_POLICY),
        )
        sankeys = "".join(
            f"<div>{render(sankey_fig(net, r), f'fig-flows-{i}')}</div>"
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
            signal_fig(
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
            signal_fig(
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
        f"coloured by green share of the <b>{esc(main.name if main else '')}</b> run.</p>"
        + render(map_fig(net, main), "fig-map")
    )

    nav = "".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name in sections)
    html_sections = "".join(
        f'<section id="{sid}"><h2>{esc(name)}</h2>{body[sid]}</section>' for sid, name in sections
    )
    meta_html = "".join(f"<span>{esc(k)}: <b>{esc(v)}</b></span>" for k, v in meta)
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="suanwang {esc(__version__)}">\n'
        f"<title>{esc(title)} — {esc(scenario_name)}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n"
        f'<header><h1>{esc(title)}</h1><div class="meta">{meta_html}</div></header>\n'
        f"<nav>{nav}</nav>\n<main>\n{html_sections}\n</main>\n"
        f"<footer>suanwang {esc(__version__)} · self-contained report, works offline</footer>\n"
        "</body>\n</html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
