"""Offers for the placement engine and the simulator (pure): price arrays, offer files, and
what consumers paid at offer prices against posted prices.

:func:`scu_prices` turns an offer-aware :class:`~suanwang.billing.pricing.PriceBook` into the
engine's :class:`~suanwang.core.cost.ScuPrices` (per precision, pool and hour of the signals).
Only pay-as-you-go offers (``on_demand``, ``idle_discount``) price placements; ``reserved``
offers are sold by reservation (the control plane) and are left out here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from suanwang.core.cost import ScuPrices, hour_span, hour_window
from suanwang.core.network import PRECISIONS, Network
from suanwang.scenarios.loader import ScenarioError, safe_yaml

from .offers import Offer, OfferBook, OfferError, OfferType, offer_from_dict
from .pricing import NoPrice, PriceBook

HOUR = timedelta(hours=1)


def posted_prices(net: Network, book: PriceBook, start: datetime, hours: int) -> np.ndarray:
    """Posted CNY per SCU, ``(precisions, pools, hours + 1)``, hour 0 = ``start`` (UTC);
    ``nan`` where a chip cannot run a precision."""
    tz = ZoneInfo(net.scenario.timezone)
    local = np.array([(start + h * HOUR).astimezone(tz).hour for h in range(hours + 1)])
    out = np.full((len(PRECISIONS), net.n_pools, hours + 1), np.nan)
    tables: dict[tuple[str, str, int], np.ndarray] = {}
    for p in range(net.n_pools):
        center = net.center_ids[int(net.pool_center[p])]
        model = net.pool_model[p]
        for q, precision in enumerate(PRECISIONS):
            key = (center, model, q)
            if key not in tables:
                try:
                    tables[key] = np.array([float(x) for x in book.table(center, model, precision)])
                except NoPrice:
                    continue
            out[q, p] = tables[key][local]
    return out


def scu_prices(net: Network, book: PriceBook, start: datetime, hours: int) -> ScuPrices | None:
    """The engine's offer arrays over ``hours`` from ``start`` (None: no offer in range)."""
    offers = [o for o in book.offers.offers if o.type is not OfferType.RESERVED]
    pool_of = {(net.center_ids[int(c)], m): p for p, (c, m) in
               enumerate(zip(net.pool_center, net.pool_model, strict=True))}  # fmt: skip
    spans: list[tuple[Offer, int, int, int]] = []
    for o in offers:
        p = pool_of.get((o.center_id, o.model))
        h0, h1 = hour_span(start, o.start, o.end, hours)
        if p is not None and h1 > h0:
            spans.append((o, p, h0, h1))
    if not spans:
        return None
    posted = posted_prices(net, book, start, hours)
    best = np.full_like(posted, np.inf)
    offered = np.zeros((net.n_pools, hours + 1))
    for o, p, h0, h1 in spans:
        price = float(o.price_cny_per_scu)
        qs = [PRECISIONS.index(o.precision)] if o.precision else range(len(PRECISIONS))
        for q in qs:
            np.minimum(best[q, p, h0:h1], price, out=best[q, p, h0:h1])
        offered[p, h0:h1] += o.units
    offer = np.where(np.isfinite(best) & np.isfinite(posted), best, np.nan)
    return ScuPrices(posted=posted, offer=offer, offered_units=offered)


def load_offers(path: Path, scenario_net: Network) -> OfferBook:
    """Offers from a YAML file (a list, or ``{offers: [...]}``), checked against the scenario.

    Raises ``ValueError`` with ``file: offers[i].field: message`` lines.
    """
    try:
        doc, _ = safe_yaml(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read offers ({exc})") from None
    except ScenarioError as exc:
        raise ValueError(f"cannot read offers: {exc}") from None
    items = doc.get("offers") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ValueError(f"{path}: offers: expected a list of offers (or 'offers: [...]')")
    out: list[Offer] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise OfferError("offer", "expected a mapping of fields")
            offer = offer_from_dict(item, default_id=f"offer-{i + 1}")
            offer.check_scenario(scenario_net.scenario)
            out.append(offer)
        except OfferError as exc:
            problems.append(f"{path}: offers[{i}].{exc.field}: {exc.message}")
    if problems:
        raise ValueError("\n".join(problems))
    try:
        return OfferBook.of(out)
    except OfferError as exc:
        raise ValueError(f"{path}: offers.{exc.field}: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class Paid:
    """What completed jobs paid: at offer prices (where an offer had room) and at posted."""

    offer_cny: float
    posted_cny: float
    jobs_under_offers: int

    @property
    def saved_cny(self) -> float:
        return self.posted_cny - self.offer_cny


def paid(
    prices: ScuPrices | None,
    net: Network,
    *,
    pools: np.ndarray,
    starts_s: np.ndarray,
    ends_s: np.ndarray,
    work_scu: np.ndarray,
    precision_index: np.ndarray,
    units: np.ndarray,
    posted: np.ndarray,
) -> Paid:
    """What completed jobs (``pools >= 0``, finite ``ends_s``) paid, each at its start hour's
    price per SCU: the offer's where the offered units still had room at that hour (jobs in
    start order, each holding its units until it ends, as the engine plans), else the posted
    price. ``posted`` is from :func:`posted_prices` (the only prices when ``prices`` is None)."""
    done = np.flatnonzero((pools >= 0) & np.isfinite(ends_s) & np.isfinite(starts_s))
    hours = posted.shape[2] - 1
    h = np.minimum((starts_s[done] // 3600).astype(np.int64), hours)
    base = posted[precision_index[done], pools[done], h]
    base = np.where(np.isfinite(base), base, 0.0)
    posted_total = float((base * work_scu[done]).sum())
    if prices is None:
        return Paid(posted_total, posted_total, 0)
    used = np.zeros_like(prices.offered_units)
    offer_total = 0.0
    under = 0
    offer = prices.offer
    order = done[np.argsort(starts_s[done], kind="stable")]
    for j in order.tolist():  # a report, once per run: jobs in start order
        p, q = int(pools[j]), int(precision_index[j])
        h0, h1 = hour_window(float(starts_s[j]), float(ends_s[j]))
        h0 = min(h0, hours)
        h1 = max(min(h1, hours), h0 + 1)
        price = posted[q, p, h0] if math.isfinite(posted[q, p, h0]) else 0.0
        if math.isfinite(offer[q, p, h0]) and used[p, h0] + units[j] <= prices.offered_units[p, h0]:
            used[p, h0:h1] += units[j]
            price = float(offer[q, p, h0])
            under += 1
        offer_total += price * float(work_scu[j])
    return Paid(offer_total, posted_total, under)


def precision_indices(precisions: Sequence[Any]) -> np.ndarray:
    return np.array([PRECISIONS.index(p) for p in precisions], dtype=np.int64)
