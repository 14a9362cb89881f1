"""Double-entry posting rules. Pure: they build balanced transactions, the server writes them
(:mod:`suanwang.server.models.billing.accounts`).

Sign convention: a posting's ``amount`` is positive when it *credits* the account (what the
platform owes the account holder, or has earned, grows) and negative when it debits it. Every
transaction sums to zero, so the sum over all accounts is always zero.

Accounts (ids are strings):

* ``consumer:<tenant>:prepaid`` — the prepaid balance (never negative);
* ``consumer:<tenant>:held`` — money reserved by holds of running jobs (never negative);
* ``consumer:<tenant>:postpaid`` — charges of jobs admitted without a hold (billing not
  required, or operators): negative = what the tenant owes;
* ``provider:<tenant>:payable`` — what the platform owes a provider for its centers' work;
* ``platform:centers:payable`` — the same for centers no provider owns (the platform runs them);
* ``platform:commission`` — the operator's commission revenue;
* ``platform:cash`` — money received from outside (top-ups) and paid out to providers
  (payouts): negative = cash in.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .money import ZERO, cents

DEFAULT_COMMISSION = Decimal("0.08")
MIN_COMMISSION = Decimal("0.05")
MAX_COMMISSION = Decimal("0.10")

PLATFORM_CASH = "platform:cash"
PLATFORM_COMMISSION = "platform:commission"
PLATFORM_CENTERS = "platform:centers:payable"


def prepaid(tenant_id: str) -> str:
    return f"consumer:{tenant_id}:prepaid"


def held(tenant_id: str) -> str:
    return f"consumer:{tenant_id}:held"


def postpaid(tenant_id: str) -> str:
    return f"consumer:{tenant_id}:postpaid"


def payable(provider_tenant_id: str | None) -> str:
    """The payable account of a center's owner (``None``: the platform's own centers)."""
    return (
        PLATFORM_CENTERS if provider_tenant_id is None else f"provider:{provider_tenant_id}:payable"
    )


#: Account kinds whose balance may never go below zero.
NON_NEGATIVE_KINDS = frozenset({"prepaid", "held"})


def account_kind(account_id: str) -> str:
    """``prepaid``, ``held``, ``postpaid``, ``payable``, ``commission`` or ``cash``."""
    last = account_id.rsplit(":", 1)[-1]
    if last in {"prepaid", "held", "postpaid", "payable", "commission", "cash"}:
        return last
    raise ValueError(f"account {account_id!r}: unknown kind")


def account_tenant(account_id: str) -> str | None:
    parts = account_id.split(":")
    return parts[1] if parts[0] in {"consumer", "provider"} and len(parts) == 3 else None


def check_commission(rate: Decimal) -> Decimal:
    if not MIN_COMMISSION <= rate <= MAX_COMMISSION:
        raise ValueError(
            f"commission rate {rate}: must be between {MIN_COMMISSION} and {MAX_COMMISSION} "
            "(5 % to 10 %)"
        )
    return rate


class Unbalanced(ValueError):
    """A transaction whose postings do not sum to zero (a bug: never written)."""


@dataclass(frozen=True, slots=True)
class Posting:
    account_id: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Entry:
    """A transaction to write: ``ref`` is unique (idempotency), ``amount`` its headline sum."""

    kind: str  # topup | hold | release | charge | reservation | refund | payout
    ref: str
    postings: tuple[Posting, ...]
    amount: Decimal
    tenant_id: str | None = None
    job_id: str | None = None
    commission: Decimal = ZERO

    def __post_init__(self) -> None:
        total = sum((p.amount for p in self.postings), ZERO)
        if total != 0:
            raise Unbalanced(f"transaction {self.ref}: postings sum to {total}, not 0")
        for p in self.postings:
            if p.amount != cents(p.amount):
                raise Unbalanced(f"transaction {self.ref}: {p.account_id} {p.amount} not in fen")

    def delta(self) -> dict[str, Decimal]:
        """Net change per account (postings on one account merged)."""
        out: dict[str, Decimal] = {}
        for p in self.postings:
            out[p.account_id] = out.get(p.account_id, ZERO) + p.amount
        return out


def topup(tenant_id: str, amount: Decimal, ref: str) -> Entry:
    if amount <= 0:
        raise ValueError(f"top-up amount must be positive, not {amount}")
    return Entry(
        "topup",
        ref,
        (Posting(PLATFORM_CASH, -amount), Posting(prepaid(tenant_id), amount)),
        amount,
        tenant_id=tenant_id,
    )


def payout(provider_tenant_id: str, amount: Decimal, ref: str) -> Entry:
    """Money paid out to a provider for what it delivered: its payable account −A (the
    platform owes it less), cash +A (money leaves the platform)."""
    if amount <= 0:
        raise ValueError(f"payout amount must be positive, not {amount}")
    return Entry(
        "payout",
        ref,
        (Posting(payable(provider_tenant_id), -amount), Posting(PLATFORM_CASH, amount)),
        amount,
        tenant_id=provider_tenant_id,
    )


def hold(tenant_id: str, job_id: str, amount: Decimal) -> Entry:
    return Entry(
        "hold",
        f"hold:{job_id}",
        (Posting(prepaid(tenant_id), -amount), Posting(held(tenant_id), amount)),
        amount,
        tenant_id=tenant_id,
        job_id=job_id,
    )


def split_commission(charge: Decimal, rate: Decimal) -> tuple[Decimal, Decimal]:
    """``(commission, payout)`` with ``commission + payout == charge`` exactly."""
    commission = cents(charge * rate)
    return commission, charge - commission


def _to_providers(by_provider: dict[str, Decimal], rate: Decimal) -> tuple[list[Posting], Decimal]:
    """The postings that pay each provider's account its part less the commission, and the
    platform the commission (taken per provider, rounded to the fen); and that commission."""
    postings: list[Posting] = []
    commission = ZERO
    for account, part in sorted(by_provider.items()):
        comm, payout = split_commission(part, rate)
        commission += comm
        if payout:
            postings.append(Posting(account, payout))
    if commission:
        postings.append(Posting(PLATFORM_COMMISSION, commission))
    return postings, commission


def charge(
    *,
    tenant_id: str,
    job_id: str,
    by_provider: dict[str, Decimal],
    hold_amount: Decimal,
    available: Decimal,
    rate: Decimal,
) -> Entry:
    """Settle a finished job: release its hold, charge it, pay providers and the platform.

    ``by_provider`` maps each payable account to the part of the charge earned on its centers
    (a job that failed over ran on several). The commission is taken per provider, rounded to
    the fen, so ``payouts + commission == charge`` exactly. The hold covers the charge first;
    what it does not cover comes from the prepaid balance (``available``, after the hold) as
    far as it goes and the rest is owed (postpaid). A job without a hold (``hold_amount`` 0,
    admitted without prepayment) is charged postpaid.
    """
    if hold_amount < 0 or any(v < 0 for v in by_provider.values()):
        raise ValueError("charges and holds are not negative")
    amount = sum(by_provider.values(), ZERO)
    postings: list[Posting] = []
    if hold_amount > 0:
        postings.append(Posting(held(tenant_id), -hold_amount))
        if hold_amount >= amount:
            rest = hold_amount - amount
            if rest:
                postings.append(Posting(prepaid(tenant_id), rest))
        else:
            over = amount - hold_amount
            from_prepaid = min(over, max(available, ZERO))
            if from_prepaid:
                postings.append(Posting(prepaid(tenant_id), -from_prepaid))
            if over - from_prepaid:
                postings.append(Posting(postpaid(tenant_id), -(over - from_prepaid)))
    elif amount:
        postings.append(Posting(postpaid(tenant_id), -amount))
    paid, commission = _to_providers(by_provider, rate)
    return Entry(
        "charge",
        f"charge:{job_id}",
        (*postings, *paid),
        amount,
        tenant_id=tenant_id,
        job_id=job_id,
        commission=commission,
    )


def reservation(
    *,
    tenant_id: str,
    reservation_id: str,
    amount: Decimal,
    provider_account: str,
    rate: Decimal,
    prepaid_only: bool,
) -> Entry:
    """Pay for a reservation at booking (trading): the consumer pays ``amount`` at once.

    ``prepaid_only`` (billing required, not an operator): from the prepaid balance, which the
    store refuses to take below zero (a 402); otherwise owed (postpaid), like a charge without
    a hold. The provider's share and the commission are split exactly like a charge's, so
    ``payout + commission == amount`` to the fen.
    """
    if amount < 0:
        raise ValueError(f"a reservation costs >= 0, not {amount}")
    payer = prepaid(tenant_id) if prepaid_only else postpaid(tenant_id)
    pays = [Posting(payer, -amount)] if amount else []
    paid, commission = _to_providers({provider_account: amount}, rate)
    return Entry(
        "reservation",
        reservation_ref(reservation_id),
        (*pays, *paid),
        amount,
        tenant_id=tenant_id,
        commission=commission,
    )


#: The kinds of transaction a consumer pays for compute with: a finished job's charge, a
#: reservation paid at booking, and the refund of a cancelled one (invoices, settlement).
BILLED_KINDS = ("charge", "reservation", "refund")
REFUND_PREFIX = "refund:"


def reservation_ref(reservation_id: str) -> str:
    """The ``ref`` of a reservation's payment (its refund's is ``refund:`` + this)."""
    return f"reservation:{reservation_id}"


def reservation_of(ref: str) -> str | None:
    """The reservation id of a payment's or refund's ``ref`` (None: neither)."""
    rest = ref.removeprefix(REFUND_PREFIX)
    return rest.removeprefix("reservation:") if rest.startswith("reservation:") else None


def reversal(original: Entry) -> Entry:
    """Undo ``original`` (a cancelled reservation's refund): every posting negated, so the
    consumer gets back exactly what it paid and the provider and commission give it back."""
    return Entry(
        "refund",
        REFUND_PREFIX + original.ref,
        tuple(Posting(p.account_id, -p.amount) for p in original.postings),
        original.amount,
        tenant_id=original.tenant_id,
        commission=-original.commission,
    )


class InsufficientBalance(Exception):
    """A debit that would take a prepaid or held account below zero."""

    def __init__(self, account_id: str, required: Decimal, available: Decimal) -> None:
        super().__init__(
            f"account {account_id}: {required} CNY required, {available} CNY available"
        )
        self.account_id = account_id
        self.required = required
        self.available = available


def no_funds(exc: InsufficientBalance) -> dict[str, str]:
    """The JSON body of a 402 at submit."""
    return {
        "error": "insufficient_balance",
        "message": (
            f"this job needs a hold of {exc.required} CNY (its estimated charge) but the "
            f"prepaid balance is {exc.available} CNY; top up and submit again"
        ),
        "required_cny": str(exc.required),
        "available_cny": str(exc.available),
    }
