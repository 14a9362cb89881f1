"""The ledger's invariants, checked (``suanwang billing verify``; see docs/billing.md)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from suanwang.billing import ledger, quotas
from suanwang.billing.money import ZERO, cents, qty
from suanwang.server.database.models import (
    Account,
    LedgerPosting,
    LedgerTransaction,
    QuotaGrant,
    QuotaUse,
    ReservationRow,
    UsageRecord,
)


def verify(*, session: Session) -> list[str]:
    """Every broken invariant, one line each (empty: the ledger is sound). See docs/billing.md."""
    problems: list[str] = []
    for tx_id, ref, total in session.execute(
        select(LedgerTransaction.id, LedgerTransaction.ref, func.sum(LedgerPosting.amount))
        .join(LedgerPosting, LedgerPosting.transaction_id == LedgerTransaction.id)
        .group_by(LedgerTransaction.id, LedgerTransaction.ref)
        .having(func.sum(LedgerPosting.amount) != 0)
    ):
        problems.append(f"transaction {tx_id} ({ref}): postings sum to {total}, not 0")
    sums = dict(
        session.execute(
            select(LedgerPosting.account_id, func.sum(LedgerPosting.amount)).group_by(
                LedgerPosting.account_id
            )
        ).all()
    )
    for acct in session.scalars(select(Account).order_by(Account.id)):
        posted = cents(Decimal(sums.get(acct.id) or 0))
        if acct.balance != posted:
            problems.append(
                f"account {acct.id}: balance {acct.balance} but its postings sum to {posted}"
            )
        if acct.kind in ledger.NON_NEGATIVE_KINDS and acct.balance < 0:
            problems.append(f"account {acct.id}: negative {acct.kind} balance {acct.balance}")
        if acct.id.startswith("provider:") and acct.balance < 0:
            problems.append(
                f"account {acct.id}: the provider owes the platform {-acct.balance} (paid out "
                "more than it earned)"
            )
    # charges: consumer charge == provider payouts + commission == the job's usage records
    payouts = dict(
        session.execute(
            select(LedgerPosting.transaction_id, func.sum(LedgerPosting.amount))
            .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
            .where(
                LedgerTransaction.kind == "charge",
                (LedgerPosting.account_id.like("provider:%"))
                | (LedgerPosting.account_id == ledger.PLATFORM_CENTERS)
                | (LedgerPosting.account_id == ledger.PLATFORM_COMMISSION),
            )
            .group_by(LedgerPosting.transaction_id)
        ).all()
    )
    usage = dict(
        session.execute(
            select(UsageRecord.transaction_id, func.sum(UsageRecord.amount_cny))
            .where(UsageRecord.billable.is_(True))
            .group_by(UsageRecord.transaction_id)
        ).all()
    )
    for tx in session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "charge")):
        paid = cents(Decimal(payouts.get(tx.id) or 0))
        if paid != tx.amount:
            problems.append(
                f"charge {tx.ref}: consumer charged {tx.amount} but providers + commission "
                f"got {paid}"
            )
        used = cents(Decimal(usage.get(tx.id) or 0))
        if used != tx.amount:
            problems.append(
                f"charge {tx.ref}: {tx.amount} charged but its usage records sum to {used}"
            )
    for job_id, n in session.execute(
        select(LedgerTransaction.job_id, func.count())
        .where(LedgerTransaction.kind == "charge")
        .group_by(LedgerTransaction.job_id)
        .having(func.count() > 1)
    ):
        problems.append(f"job {job_id}: charged {n} times")
    for rec_id, job_id, tx_job in session.execute(
        select(UsageRecord.id, UsageRecord.job_id, LedgerTransaction.job_id)
        .outerjoin(LedgerTransaction, LedgerTransaction.id == UsageRecord.transaction_id)
        .where(
            (UsageRecord.transaction_id.is_(None))
            | (LedgerTransaction.job_id.is_(None))
            | (LedgerTransaction.job_id != UsageRecord.job_id)
        )
    ):
        problems.append(
            f"usage record {rec_id} of job {job_id}: not charged with its job ({tx_job})"
        )
    for rec_id, job_id, amount, parts in session.execute(
        select(
            UsageRecord.id,
            UsageRecord.job_id,
            UsageRecord.amount_cny,
            UsageRecord.compute_cny + UsageRecord.transfer_cny + UsageRecord.storage_cny,
        ).where(
            UsageRecord.billable.is_(True),
            UsageRecord.amount_cny
            != UsageRecord.compute_cny + UsageRecord.transfer_cny + UsageRecord.storage_cny,
        )
    ):
        problems.append(
            f"usage record {rec_id} of job {job_id}: amount {amount} is not compute + transfer "
            f"+ storage ({parts})"
        )
    for rec_id, job_id, served, used in session.execute(
        select(UsageRecord.id, UsageRecord.job_id, UsageRecord.tokens, func.sum(QuotaUse.quantity))
        .join(QuotaUse, QuotaUse.usage_record_id == UsageRecord.id)
        .where(QuotaUse.resource == quotas.TOKENS)
        .group_by(UsageRecord.id, UsageRecord.job_id, UsageRecord.tokens)
    ):
        if Decimal(used) <= served:
            continue  # (compared here: on SQLite the two columns are scaled differently)
        problems.append(
            f"usage record {rec_id} of job {job_id}: {qty(Decimal(used))} free tokens used "
            f"for {served} tokens served"
        )
    payout_sides: dict[int, dict[str, Decimal]] = {}
    for tx_id, account, amount in session.execute(
        select(LedgerPosting.transaction_id, LedgerPosting.account_id, LedgerPosting.amount)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerTransaction.kind == "payout")
    ):
        side = payout_sides.setdefault(tx_id, {})
        side[account] = side.get(account, ZERO) + amount
    for tx in session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "payout")):
        posts = {ledger.payable(tx.tenant_id): -tx.amount, ledger.PLATFORM_CASH: tx.amount}
        if tx.tenant_id is None or tx.amount <= 0 or payout_sides.get(tx.id) != posts:
            problems.append(
                f"payout {tx.ref}: {tx.amount} to {tx.tenant_id} but it posts "
                f"{payout_sides.get(tx.id)} (not its provider's payable to cash)"
            )
    problems += _verify_trials(session)
    problems += _verify_reservations(session)
    # holds: a tenant's held balance is the sum of its open holds (no charge yet), each less
    # what was released when its job was placed
    charge = LedgerTransaction.__table__.alias("c")
    open_holds: dict[str | None, Decimal] = {}
    for tid, kind, amount in session.execute(
        select(LedgerTransaction.tenant_id, LedgerTransaction.kind, LedgerTransaction.amount)
        .outerjoin(
            charge, and_(charge.c.job_id == LedgerTransaction.job_id, charge.c.kind == "charge")
        )
        .where(LedgerTransaction.kind.in_(["hold", "release"]), charge.c.id.is_(None))
    ):
        sign = 1 if kind == "hold" else -1
        open_holds[tid] = open_holds.get(tid, ZERO) + sign * amount
    hold = LedgerTransaction.__table__.alias("h")
    for job_id, released, held_amount in session.execute(
        select(LedgerTransaction.job_id, func.sum(LedgerTransaction.amount), hold.c.amount)
        .outerjoin(hold, and_(hold.c.job_id == LedgerTransaction.job_id, hold.c.kind == "hold"))
        .where(LedgerTransaction.kind == "release")
        .group_by(LedgerTransaction.job_id, hold.c.amount)
    ):
        released = cents(Decimal(released))
        if held_amount is None or not ZERO <= released <= held_amount:
            problems.append(
                f"job {job_id}: its releases give back {released} of a hold of {held_amount}"
            )
    for acct in session.scalars(select(Account).where(Account.kind == "held")):
        expect = cents(Decimal(open_holds.get(acct.tenant_id) or 0))
        if acct.balance != expect:
            problems.append(
                f"account {acct.id}: holds {acct.balance} but open holds sum to {expect}"
            )
    return problems


def _verify_trials(session: Session) -> list[str]:
    """Trial quotas: every charge's consumer side pays the charge less what the trials account
    paid, which is what its quota uses covered; every grant's use is the sum of its uses and
    within the grant; every use belongs to a usage record of its charge's job."""
    problems: list[str] = []
    consumer = (
        LedgerPosting.account_id.like("consumer:%:prepaid")
        | LedgerPosting.account_id.like("consumer:%:held")
        | LedgerPosting.account_id.like("consumer:%:postpaid")
    )
    sides: dict[int, tuple[Decimal, Decimal]] = {}
    for tx_id, account, amount in session.execute(
        select(LedgerPosting.transaction_id, LedgerPosting.account_id, LedgerPosting.amount)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(
            LedgerTransaction.kind == "charge",
            consumer | (LedgerPosting.account_id == quotas.TRIALS),
        )
    ):
        paid, trials = sides.get(tx_id, (ZERO, ZERO))
        if account == quotas.TRIALS:
            trials += amount
        else:
            paid += amount
        sides[tx_id] = (paid, trials)
    covered = dict(
        session.execute(
            select(QuotaUse.transaction_id, func.sum(QuotaUse.value_cny)).group_by(
                QuotaUse.transaction_id
            )
        ).all()
    )
    for tx in session.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "charge")):
        paid, trials = sides.get(tx.id, (ZERO, ZERO))
        if paid + trials != -tx.amount:
            problems.append(
                f"charge {tx.ref}: consumer paid {-paid} and trials {-trials}, not {tx.amount}"
            )
        free = cents(Decimal(covered.get(tx.id) or 0))
        if -trials != free:
            problems.append(
                f"charge {tx.ref}: trials paid {-trials} but its quota uses cover {free}"
            )
    uses: dict[tuple[int, str], Decimal] = {
        (g, r): Decimal(q)
        for g, r, q in session.execute(
            select(QuotaUse.grant_id, QuotaUse.resource, func.sum(QuotaUse.quantity)).group_by(
                QuotaUse.grant_id, QuotaUse.resource
            )
        )
    }
    for g in session.scalars(select(QuotaGrant).order_by(QuotaGrant.id)):
        for resource, used, granted in (
            (quotas.CARD_HOURS, g.card_hours_used, g.card_hours),
            (quotas.STORAGE_GB_MONTHS, g.storage_gb_months_used, g.storage_gb_months),
            (quotas.TOKENS, Decimal(g.tokens_used), Decimal(g.tokens)),
        ):
            recorded = qty(uses.get((g.id, resource), ZERO))
            if used != recorded:
                problems.append(
                    f"quota grant {g.id}: {resource} used {used} but its uses sum to {recorded}"
                )
            if not 0 <= used <= granted:
                problems.append(f"quota grant {g.id}: {resource} used {used} of {granted}")
    rec = UsageRecord.__table__.alias("u")
    for use_id, job_id, rec_job, tx_job, tx_kind in session.execute(
        select(QuotaUse.id, QuotaUse.job_id, rec.c.job_id, LedgerTransaction.job_id,
               LedgerTransaction.kind)
        .outerjoin(rec, rec.c.id == QuotaUse.usage_record_id)
        .outerjoin(LedgerTransaction, LedgerTransaction.id == QuotaUse.transaction_id)
        .where(
            (rec.c.job_id.is_(None)) | (rec.c.job_id != QuotaUse.job_id)
            | (LedgerTransaction.job_id.is_(None)) | (LedgerTransaction.job_id != QuotaUse.job_id)
            | (LedgerTransaction.kind != "charge")
        )
    ):  # fmt: skip
        problems.append(
            f"quota use {use_id} of job {job_id}: its usage record is of job {rec_job} and its "
            f"transaction ({tx_kind}) of job {tx_job}"
        )
    return problems


def _verify_reservations(session: Session) -> list[str]:
    """Trading: every reservation payment is its booking's (same tenant, the booking's
    amount, which the consumer pays and providers + commission receive); every refund
    negates its payment posting by posting and is of a cancelled booking; every paid
    booking has its payment, and every cancelled paid booking its refund."""
    problems: list[str] = []
    txs = list(
        session.scalars(
            select(LedgerTransaction)
            .where(LedgerTransaction.kind.in_(["reservation", "refund"]))
            .order_by(LedgerTransaction.id)
        )
    )
    postings: dict[int, dict[str, Decimal]] = {}
    for tx_id, account, amount in session.execute(
        select(LedgerPosting.transaction_id, LedgerPosting.account_id, LedgerPosting.amount)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerTransaction.kind.in_(["reservation", "refund"]))
    ):
        side = postings.setdefault(tx_id, {})
        side[account] = side.get(account, ZERO) + amount
    booked = {r.id: r for r in session.scalars(select(ReservationRow))}
    payments = {t.ref: t for t in txs if t.kind == "reservation"}
    refunded: set[str] = set()
    for tx in txs:
        rid = ledger.reservation_of(tx.ref)
        row = booked.get(rid or "")
        if row is None:
            problems.append(f"{tx.kind} {tx.ref}: no reservation {rid}")
            continue
        mine = {a: v for a, v in postings.get(tx.id, {}).items() if v}
        if tx.kind == "refund":
            refunded.add(row.id)
            paid = payments.get(ledger.reservation_ref(row.id))
            owed = {a: -v for a, v in postings.get(paid.id, {}).items() if v} if paid else None
            if paid is None or mine != owed or tx.amount != paid.amount:
                problems.append(
                    f"refund {tx.ref}: {tx.amount} does not negate its payment "
                    f"({None if paid is None else paid.amount}) posting by posting"
                )
            if row.cancelled_at is None:
                problems.append(f"refund {tx.ref}: reservation {row.id} is not cancelled")
            continue
        if row.transaction_id != tx.id or row.tenant_id != tx.tenant_id:
            problems.append(
                f"reservation {tx.ref}: transaction {tx.id} of tenant {tx.tenant_id} but the "
                f"reservation names transaction {row.transaction_id} of tenant {row.tenant_id}"
            )
        consumer = sum((v for a, v in mine.items() if a.startswith("consumer:")), ZERO)
        earned = sum(
            (v for a, v in mine.items()
             if a.startswith("provider:") or a in (ledger.PLATFORM_CENTERS,
                                                    ledger.PLATFORM_COMMISSION)),
            ZERO,
        )  # fmt: skip
        if not tx.amount == row.amount_cny == -consumer == earned:
            problems.append(
                f"reservation {tx.ref}: {tx.amount} paid for a booking of {row.amount_cny}; "
                f"the consumer paid {-consumer}, providers + commission got {earned}"
            )
    for row in booked.values():
        ref = ledger.reservation_ref(row.id)
        if row.amount_cny and ref not in payments:
            problems.append(f"reservation {row.id}: {row.amount_cny} but no payment {ref}")
        if row.cancelled_at is not None and ref in payments and row.id not in refunded:
            problems.append(f"reservation {row.id}: cancelled but its payment is not refunded")
    return problems
