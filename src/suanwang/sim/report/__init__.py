"""A self-contained HTML report of a simulation run (opens offline: plotly.js is inlined once).

:func:`write_report` takes the per-policy :class:`~suanwang.sim.metrics.PolicyReport` objects
of one replay, the offline bounds computed for it (the relaxed
:class:`~suanwang.scheduling.bound.Bound` and the non-preemptive one of
:mod:`suanwang.scheduling.tight_bound`, each optional), and the network and signals they ran
on, and writes one HTML page with:

1. summary tables (money, energy, carbon; service quality) with a row per bound, what each
   bound is, cost / the tightest bound and cost relative to ``nearest``;
2. with governed runs only (``simulate --tenants``), sharing among tenants: the fairness
   indices per policy, each tenant's usage against its entitlement per hour (backlogged hours
   marked), waits by class, preemptions per hour, and a table per tenant;
3. cost and carbon bars per policy against the bounds (a labelled line each);
4. network-wide green share (and facility energy) per hour;
5. card utilization per hub over time;
6. origin grid region -> executing hub flows (东数西算) as Sankey diagrams;
7. price and green-fraction heatmaps per center (China time, UTC+8);
8. a plain lon/lat scatter of the centers (no tile server or geo basemap download).

The page is built with plain string formatting; every text that comes from data is escaped.
Figure ``div`` ids are fixed, so the same inputs give the same bytes.

Modules, from the bottom up: ``text`` (numbers and text), ``style`` (colours, template, CSS,
renderer), ``data`` (what the figures read from a run), ``bounds`` (the bounds shown, tightest
first, and what each is), ``tables``, ``charts``, ``sharing`` and ``centers`` (the sections),
``page`` (the page and :func:`write_report`).
"""

from suanwang.sim.report.page import write_report

__all__ = ["write_report"]
