"""Trial quotas: what a tenant's free allowances cover of a job's usage, and the charge entry
that has the platform fund the covered part. Pure: :mod:`.store` reads and locks the grants.

An operator grants a tenant free **card-hours**, **storage GB-months** and **tokens**, optionally
until an expiry. When a job is charged its billable usage records consume the tenant's unexpired
grants first (earliest expiry first, then oldest), record by record:

* card-hours = units x hours of the record, for accelerator runs only. CPU jobs' core-hours do
  not count (a core is not a card: a trial is meant for cards). A card-hour covers the compute
  charge of the record in proportion (``compute_cny x free_hours / card_hours``, rounded to
  the fen cumulatively, so a fully covered record is free to the fen); transfer is not covered.
  A record whose compute costs nothing (e.g. rated at 0 on units reserved and paid at booking)
  uses no free card-hours.
* storage GB-months = the job's staged ``data_gb`` held at the center for the record's run
  (``data_gb x hours / 730``, metered by :mod:`.rating`). A free GB-month covers the record's
  storage charge in proportion, as card-hours cover compute.
* tokens = what the record's run reported serving. Free tokens cover what card-hours left of
  the record's compute charge: one free token per token served, each worth at most the
  platform's token value (``token_value``: CNY per million tokens, a billing setting), and
  never more than the compute left (so a run that reports few tokens cannot make a few free
  tokens pay for hours of work). A record with no tokens, or whose compute is already free or
  costs nothing, uses none.

The covered (free) part of a charge is paid to the provider like any other: the platform funds
it from its commission, through the account ``platform:trials:commission`` (debited; the net
commission is ``platform:commission`` + this account). So consumer charge + trials = provider
payouts + commission = the sum of the job's usage records, to the fen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal

from suanwang.core.hardware import Precision

from . import ledger
from .ledger import Entry, Posting
from .money import MAX_TOKENS as MAX_TOKENS  # re-exported: grants are checked against it
from .money import ZERO, cents, cents_down, qty
from .rating import HOURS_PER_MONTH as HOURS_PER_MONTH  # GB-months are metered by .rating
from .rating import UsageLine

#: The platform's account that funds trial quotas (kind ``commission``: spent commission).
TRIALS = "platform:trials:commission"
CARD_HOURS = "card_hours"
STORAGE_GB_MONTHS = "storage_gb_months"
TOKENS = "tokens"
RESOURCES = (CARD_HOURS, STORAGE_GB_MONTHS, TOKENS)
#: The default worth of a free token: CNY per million tokens (about a mainstream large
#: model's list price for input tokens in China; an operator sets its own).
DEFAULT_TOKEN_VALUE = Decimal("2.00")
MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Allowance:
    """What is left of one grant (in the order grants are consumed)."""

    grant_id: int
    card_hours: Decimal
    storage_gb_months: Decimal
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class Cover:
    """What one grant covers of one usage line."""

    seq: int
    grant_id: int
    resource: str
    quantity: Decimal
    value_cny: Decimal


def end_of_day(day: date | None) -> datetime | None:
    """The last instant of ``day`` in UTC: a grant is usable up to and including its day."""
    return None if day is None else datetime.combine(day, time.max, tzinfo=UTC)


def card_hours(line: UsageLine) -> Decimal:
    """Card-hours of a billable accelerator run (0 for CPU runs and unbilled runs)."""
    if not line.billable or line.precision is Precision.CPU:
        return ZERO
    return qty(line.units * line.seconds / 3600)


def storage_gb_months(line: UsageLine) -> Decimal:
    """The GB-months of a billable record's storage (0 for an unbilled run)."""
    return line.storage_gb_months if line.billable else ZERO


def tokens(line: UsageLine) -> int:
    """Tokens a billable record's run served (0 for an unbilled run)."""
    return line.tokens if line.billable else 0


def allocate(
    lines: Sequence[UsageLine],
    allowances: Sequence[Allowance],
    *,
    token_value: Decimal = DEFAULT_TOKEN_VALUE,
) -> list[Cover]:
    """What the allowances (in consumption order) cover of ``lines``; never more than is left.

    Per line: card-hours cover its compute charge, storage GB-months its storage charge, each
    in proportion (``cents(base x covered / need)`` cumulatively over the grants that cover
    it, so the values sum to at most the base and a fully covered line's values sum to the
    base exactly); then tokens cover what card-hours left of the compute charge, at most
    ``token_value`` CNY per million tokens (see the module docstring).
    """
    left = {a.grant_id: {CARD_HOURS: a.card_hours, STORAGE_GB_MONTHS: a.storage_gb_months,
                         TOKENS: Decimal(a.tokens)}
            for a in allowances}  # fmt: skip
    out: list[Cover] = []
    for line in lines:
        compute_left = line.compute_cny
        hours = card_hours(line)
        if hours > 0 and line.compute_cny > 0:  # a run that costs nothing uses no free hours
            compute_left -= _take(out, left, allowances, line.seq, CARD_HOURS, hours,
                                  line.compute_cny)  # fmt: skip
        gbm = storage_gb_months(line)
        if gbm > 0:
            _take(out, left, allowances, line.seq, STORAGE_GB_MONTHS, gbm, line.storage_cny)
        served = Decimal(tokens(line))
        if served > 0 and compute_left > 0 and token_value > 0:
            _take(out, left, allowances, line.seq, TOKENS, served, compute_left,
                  per_unit=token_value / MILLION)  # fmt: skip
    return out


def _take(
    out: list[Cover],
    left: dict[int, dict[str, Decimal]],
    allowances: Sequence[Allowance],
    seq: int,
    resource: str,
    need: Decimal,
    base: Decimal,
    *,
    per_unit: Decimal | None = None,
) -> Decimal:
    """Cover up to ``need`` of ``resource`` from the grants in order, appending to ``out``;
    returns the value covered. The value of ``covered`` units is ``base x covered / need``
    (``per_unit``: ``covered x per_unit``, at most ``base``), in fen, cumulatively."""
    covered, valued = ZERO, ZERO
    for a in allowances:
        if covered >= need:
            break
        q = min(need - covered, left[a.grant_id][resource])
        if q <= 0:
            continue
        left[a.grant_id][resource] -= q
        covered += q
        if per_unit is None:
            worth = cents(base * covered / need)
        else:  # rounded down: free tokens are never worth more than their value
            worth = min(base, cents_down(covered * per_unit))
        value = worth - valued
        valued += value
        out.append(Cover(seq, a.grant_id, resource, q, value))
    return valued


def charge(
    *,
    tenant_id: str,
    job_id: str,
    by_provider: dict[str, Decimal],
    free: Decimal,
    hold_amount: Decimal,
    available: Decimal,
    rate: Decimal,
) -> Entry:
    """:func:`.ledger.charge` where ``free`` of the charge is covered by trial quotas.

    Providers and the commission are paid on the whole charge exactly as without quotas; the
    consumer pays ``charge - free`` (from the hold, then prepaid, then postpaid) and the
    platform's trials account pays ``free``. The entry's ``amount`` is the whole charge.
    """
    amount = sum(by_provider.values(), ZERO)
    if not ZERO <= free <= amount or free != cents(free):
        raise ValueError(f"job {job_id}: free part {free} must be within 0..{amount}, in fen")
    if free == 0:
        return ledger.charge(
            tenant_id=tenant_id, job_id=job_id, by_provider=by_provider,
            hold_amount=hold_amount, available=available, rate=rate,
        )  # fmt: skip
    full = ledger.charge(  # providers and commission on the whole charge, consumer postpaid
        tenant_id=tenant_id, job_id=job_id, by_provider=by_provider,
        hold_amount=ZERO, available=ZERO, rate=rate,
    )  # fmt: skip
    paid = ledger.charge(  # the consumer's side for what it pays (the hold released too)
        tenant_id=tenant_id, job_id=job_id, by_provider={TRIALS: amount - free},
        hold_amount=hold_amount, available=available, rate=ledger.MIN_COMMISSION,
    )  # fmt: skip
    consumer = {ledger.prepaid(tenant_id), ledger.held(tenant_id), ledger.postpaid(tenant_id)}
    postings = (
        *(p for p in paid.postings if p.account_id in consumer),
        Posting(TRIALS, -free),
        *(p for p in full.postings if p.account_id not in consumer),
    )
    return Entry(
        "charge",
        full.ref,
        postings,
        amount,
        tenant_id=tenant_id,
        job_id=job_id,
        commission=full.commission,
    )


def consumer_side(entry: Entry) -> Decimal:
    """Net change of the consumer's accounts in ``entry`` (a charge: minus what it paid)."""
    tid = entry.tenant_id or ""
    mine = {ledger.prepaid(tid), ledger.held(tid), ledger.postpaid(tid)}
    return sum((p.amount for p in entry.postings if p.account_id in mine), ZERO)
