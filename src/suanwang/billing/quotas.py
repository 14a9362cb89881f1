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
  (``data_gb x hours / 730``). The platform posts no storage price (staged data is charged once,
  as transfer), so storage is metered and consumed but covers 0.00 CNY.
* tokens: the platform meters no tokens (no job reports or declares them), so token grants are
  recorded and shown but never consumed.

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
from .money import ZERO, cents, qty
from .rating import UsageLine

#: The platform's account that funds trial quotas (kind ``commission``: spent commission).
TRIALS = "platform:trials:commission"
CARD_HOURS = "card_hours"
STORAGE_GB_MONTHS = "storage_gb_months"
TOKENS = "tokens"
RESOURCES = (CARD_HOURS, STORAGE_GB_MONTHS, TOKENS)
#: Hours in a billing month for GB-months (365 x 24 / 12).
HOURS_PER_MONTH = Decimal(730)


@dataclass(frozen=True, slots=True)
class Allowance:
    """What is left of one grant (in the order grants are consumed)."""

    grant_id: int
    card_hours: Decimal
    storage_gb_months: Decimal


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


def storage_gb_months(line: UsageLine, data_gb: Decimal) -> Decimal:
    """The job's staged data held at the run's center for the run, in GB-months."""
    if not line.billable or data_gb <= 0:
        return ZERO
    return qty(data_gb * line.seconds / 3600 / HOURS_PER_MONTH)


def allocate(
    lines: Sequence[UsageLine], allowances: Sequence[Allowance], *, data_gb: Decimal
) -> list[Cover]:
    """What the allowances (in consumption order) cover of ``lines``; never more than is left.

    Per line and resource, the value covered is ``cents(base x covered / need)`` cumulatively
    over the grants that cover it, so the values sum to at most the base and a fully covered
    line's values sum to the base exactly.
    """
    left = {a.grant_id: {CARD_HOURS: a.card_hours, STORAGE_GB_MONTHS: a.storage_gb_months}
            for a in allowances}  # fmt: skip
    out: list[Cover] = []
    for line in lines:
        needs = (
            (CARD_HOURS, card_hours(line), line.compute_cny),
            (STORAGE_GB_MONTHS, storage_gb_months(line, data_gb), ZERO),
        )
        for resource, need, base in needs:
            if resource == CARD_HOURS and base <= 0:
                continue  # nothing to pay (e.g. a run on units reserved and paid at booking)
            covered, valued = ZERO, ZERO
            for a in allowances:
                if covered >= need:
                    break
                take = min(need - covered, left[a.grant_id][resource])
                if take <= 0:
                    continue
                left[a.grant_id][resource] -= take
                covered += take
                value = cents(base * covered / need) - valued
                valued += value
                out.append(Cover(line.seq, a.grant_id, resource, take, value))
    return out


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
