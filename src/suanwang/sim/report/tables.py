"""The summary tables: cost, energy and carbon (against the tightest bound and ``nearest``, a row
per bound computed), service quality, and what consumers paid under providers' offers."""

from __future__ import annotations

import math
from collections.abc import Sequence

from suanwang.sim.metrics import COUNT_KEYS, PolicyReport
from suanwang.sim.report.bounds import Bounds, bound_notes
from suanwang.sim.report.data import metric
from suanwang.sim.report.style import BASELINE_POLICY, policy_colors
from suanwang.sim.report.text import duration, esc, integer, pct, sig, signed_pct


def summary_html(reports: Sequence[PolicyReport], bounds: Bounds) -> str:
    colors = policy_colors(reports)
    names = [r.name for r in reports]
    base = reports[names.index(BASELINE_POLICY)] if BASELINE_POLICY in names else None
    base_cost = metric(base, "cost_cny") if base is not None else float("nan")
    top = bounds.tightest
    against = top if top is not None and top.bound.cost_cny > 0 else None
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
    if against is not None:
        head.append(f"Cost / {against.label}")
    if has_base:
        head.append("Cost vs nearest")
    costs = [metric(r, "cost_cny") for r in reports]
    finite = [c for c in costs if math.isfinite(c)]
    best = min(finite) if finite else float("nan")

    def cost_cells(cost: float) -> list[str]:
        cells = []
        if against is not None:
            cells.append(f"<td>{sig(cost / against.bound.cost_cny)}×</td>")
        if has_base:
            cells.append(f"<td>{signed_pct(cost / base_cost - 1.0)}</td>")
        return cells

    rows = []
    for r, cost in zip(reports, costs, strict=True):
        cls = ' class="best"' if cost == best and len(reports) > 1 else ""
        cells = [
            f'<td><span class="swatch" style="background:{colors[r.name]}"></span>'
            f"{esc(r.name)}</td>",
            f"<td{cls}>{sig(cost)}</td>",
            f"<td>{sig(metric(r, 'energy_cost_cny'))}</td>",
            f"<td>{sig(metric(r, 'transfer_cost_cny'))}</td>",
            f"<td>{sig(metric(r, 'energy_kwh'))}</td>",
            f"<td>{pct(metric(r, 'green_share'))}</td>",
            f"<td>{sig(metric(r, 'carbon_t'))}</td>",
            *cost_cells(cost),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    for shown in bounds.shown:
        bound = shown.bound
        cells = [
            f"<td>{esc(shown.label)}</td>",
            f"<td>{sig(bound.cost_cny)}</td>",
            f"<td>{sig(bound.energy_cost_cny)}</td>",
            f"<td>{sig(bound.transfer_cost_cny)}</td>",
            f"<td>{sig(bound.energy_kwh)}</td>",
            "<td>—</td>",
            f"<td>{sig(bound.carbon_t)}</td>",
            *cost_cells(bound.cost_cny),
        ]
        rows.append('<tr class="bound">' + "".join(cells) + "</tr>")
    money = table(head, rows)

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
            f"{esc(r.name)}</td>",
            f"<td>{duration(metric(r, 'mean_wait_s'))}</td>",
            f"<td>{duration(metric(r, 'p95_wait_s'))}</td>",
            f"<td>{duration(metric(r, 'mean_jct_s'))}</td>",
            *(f"<td>{integer(metric(r, k))}</td>" for k in COUNT_KEYS),
            f"<td>{pct(metric(r, 'utilization'))}</td>",
            f"<td>{integer(metric(r, 'decisions_per_s'))}</td>",
        ]
        srows.append("<tr>" + "".join(cells) + "</tr>")
    service = table(shead, srows)

    notes = bound_notes(bounds)
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
        + "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    )


def paid_html(reports: Sequence[PolicyReport]) -> str:
    """With providers' offers (trading): what consumers paid at offer vs posted prices."""
    with_offers = [r for r in reports if "paid_offer_cny" in r.metrics]
    if not with_offers:
        return ""
    rows = []
    for r in with_offers:
        offer, posted = metric(r, "paid_offer_cny"), metric(r, "paid_posted_cny")
        rows.append(
            f"<tr><td>{esc(r.name)}</td><td>{sig(offer)}</td><td>{sig(posted)}</td>"
            f"<td>{sig(posted - offer)}</td><td>{integer(metric(r, 'jobs_under_offers'))}</td></tr>"
        )
    head = ["policy", "at offer prices (CNY)", "at posted prices (CNY)", "saved", "jobs"]
    return (
        '<h3>Paid by consumers (providers\' offers)</h3><div class="table-wrap">'
        + table(head, rows)
        + '</div><p class="note">Each completed job at its start hour\'s price per SCU: an '
        "offer's where its units had room, else the posted price.</p>"
    )


def table(head: Sequence[str], rows: Sequence[str]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
