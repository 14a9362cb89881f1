"""What a sweep writes: the results table (one row per run, CSV and Parquet) and an HTML
summary with, per (edits, workload, policy), the median over seeds of each key metric and
its confidence interval (:mod:`suanwang.sim.sweep.stats`), the failed runs with their
parameters, and how the sweep ran.

The page is built like the simulator's report (:mod:`suanwang.sim.report`): plain string
formatting with every text from data escaped, its CSS, no script and nothing fetched: it opens
offline. The same results give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from suanwang import __version__
from suanwang.sim.metrics import METRIC_KEYS
from suanwang.sim.report.style import CSS
from suanwang.sim.report.text import esc, pct, sig
from suanwang.sim.sweep.runs import BOUND
from suanwang.sim.sweep.stats import MedianCI, median_ci

LABELS = ("key", "edits", "workload", "policy", "seed", "status", "seconds", "error")
#: The columns of every metric, in this order (others a run reports follow, sorted).
FIRST_METRICS = ("jobs", *METRIC_KEYS)
#: The summary's columns: metric, title, format.
SUMMARY: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("cost_cny", "cost CNY", sig),
    ("energy_kwh", "energy kWh", sig),
    ("carbon_t", "CO₂ t", sig),
    ("green_share", "green", pct),
    ("mean_wait_s", "mean wait s", sig),
    ("deadline_misses", "deadline misses", sig),
    ("latency_violations", "latency viol.", sig),
)
BASELINE = "nearest"
#: Metrics that are words, not numbers (the bound's ``kind``: relaxed or non-preemptive).
TEXT_METRICS = frozenset({"kind"})


def table(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run (grid order): its labels, status, seconds, error and metrics."""
    rows = []
    extra: set[str] = set()
    for r in results:
        metrics = r.get("metrics") or {}
        extra |= set(metrics) - set(FIRST_METRICS)
        rows.append({**{k: r.get(k) for k in LABELS}, **metrics})
    metric_cols = [*FIRST_METRICS, *sorted(extra)]
    df = pd.DataFrame(rows, columns=[*LABELS, *metric_cols])
    for col in metric_cols:
        if col in TEXT_METRICS:
            df[col] = df[col].astype("string")
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["seed"] = df["seed"].astype("int64")
    df["seconds"] = pd.to_numeric(df["seconds"], errors="coerce").astype("float64")
    for col in ("key", "edits", "workload", "policy", "status", "error"):
        df[col] = df[col].astype("string")
    return df


def write_tables(df: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """``results.csv`` and ``results.parquet`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, parquet = out_dir / "results.csv", out_dir / "results.parquet"
    df.to_csv(csv, index=False)
    df.to_parquet(parquet, index=False, engine="pyarrow")
    return csv, parquet


Group = tuple[str, str, str]  # edits, workload, policy


def groups(df: pd.DataFrame) -> dict[Group, pd.DataFrame]:
    """The finished runs of each (edits, workload, policy), in grid order."""
    ok = df[df["status"] == "ok"]
    out: dict[Group, pd.DataFrame] = {}
    for key, part in ok.groupby(["edits", "workload", "policy"], sort=False):
        e, w, p = key
        out[(str(e), str(w), str(p))] = part
    return out


def paired_ratios(df: pd.DataFrame, group: Group, other: str, metric: str) -> list[float]:
    """``metric`` of ``group``'s runs over that of policy ``other`` on the same edits,
    workload and seed (seeds where both finished)."""
    e, w, p = group
    ok = df[(df["status"] == "ok") & (df["edits"] == e) & (df["workload"] == w)]
    mine = ok[ok["policy"] == p].set_index("seed")[metric]
    theirs = ok[ok["policy"] == other].set_index("seed")[metric]
    both = mine.index.intersection(theirs.index)
    return [float(mine[s] / theirs[s]) for s in both if theirs[s] > 0]


def _cell(ci: MedianCI, fmt: Callable[[float], str]) -> str:
    if ci.n == 0:
        return "<td>—</td>"
    if ci.n == 1:
        return f"<td>{esc(fmt(ci.median))}</td>"
    return (
        f"<td>{esc(fmt(ci.median))}<br><small>[{esc(fmt(ci.low))}, {esc(fmt(ci.high))}]"
        f" {esc(pct(ci.coverage))}</small></td>"
    )


def _ratio(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.3f}"


def summary_html(
    df: pd.DataFrame,
    *,
    title: str,
    meta: Sequence[tuple[str, str]],
    edit_notes: Mapping[str, Sequence[str]],
) -> str:
    """The summary page (see the module)."""
    by_group = groups(df)
    policies = set(df["policy"])
    has_bound = BOUND in policies
    has_base = BASELINE in policies
    heads = ["edits", "workload", "policy", "seeds"]
    heads += [t for _, t, _ in SUMMARY]
    if has_bound:
        kinds = df.loc[df["policy"] == BOUND, "kind"].dropna().tolist() if "kind" in df else []
        named = ", ".join(sorted({str(k) for k in kinds}))
        heads.append(f"cost / bound ({named})" if named else "cost / bound")
    if has_base:
        heads.append(f"cost / {BASELINE}")
    rows = []
    for group, part in by_group.items():
        e, w, p = group
        cells = [f"<td>{esc(e)}</td><td>{esc(w)}</td><td>{esc(p)}</td><td>{len(part)}</td>"]
        for metric, _, fmt in SUMMARY:
            cells.append(_cell(median_ci(part[metric].tolist()), fmt))
        if has_bound:
            vs = paired_ratios(df, group, BOUND, "cost_cny") if p != BOUND else []
            cells.append(_cell(median_ci(vs), _ratio))
        if has_base:
            vs = paired_ratios(df, group, BASELINE, "cost_cny") if p != BOUND else []
            cells.append(_cell(median_ci(vs), _ratio))
        css = ' class="bound"' if p == BOUND else ""
        rows.append(f"<tr{css}>{''.join(cells)}</tr>")
    head = "".join(f"<th>{esc(h)}</th>" for h in heads)
    results = (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    failed = df[df["status"] != "ok"]
    if len(failed):
        frows = "".join(
            f"<tr><td>{esc(r.edits)}</td><td>{esc(r.workload)}</td><td>{esc(r.policy)}</td>"
            f"<td>{esc(r.seed)}</td><td>{esc(r.key)}</td>"
            f'<td style="text-align:left;white-space:normal">{esc(r.error)}</td></tr>'
            for r in failed.itertuples()
        )
        fails = (
            '<div class="table-wrap"><table><thead><tr><th>edits</th><th>workload</th>'
            "<th>policy</th><th>seed</th><th>key</th><th>error</th></tr></thead>"
            f"<tbody>{frows}</tbody></table></div>"
        )
    else:
        fails = "<p>None.</p>"
    notes = "".join(
        f"<li><b>{esc(name)}</b>: {esc('; '.join(lines) or 'the scenario as it is')}</li>"
        for name, lines in edit_notes.items()
    )
    meta_html = "".join(f"<span>{esc(k)}: <b>{esc(v)}</b></span>" for k, v in meta)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<header><h1>{esc(title)}</h1><div class="meta">{meta_html}</div></header>\n<main>\n'
        '<section id="results"><h2>Medians over seeds</h2><p class="note">Each cell: the '
        "median over the seeds that finished, below it a distribution-free confidence interval "
        "of the median (between two order statistics) and the probability that it holds the "
        "median: at least 95 % where the seeds allow it (6 or more), else the range and its "
        "real coverage (5 seeds: 93.8 %). Ratios are paired by seed: a policy's cost over the "
        "bound's, or over nearest's, on the same jobs and signals.</p>"
        f"{results}</section>\n"
        f'<section id="edits"><h2>Edits</h2><ul>{notes}</ul></section>\n'
        f'<section id="failed"><h2>Failed runs ({len(failed)})</h2>{fails}</section>\n'
        f'</main>\n<footer><p class="note" style="padding:0 2rem">suanwang {esc(__version__)}'
        " sweep summary</p></footer>\n</body>\n</html>\n"
    )
