"""Metering, rating, trading and the double-entry ledger (issue 5); see docs/billing.md.

Pure rules only (no I/O, no database): :mod:`.money` (Decimal helpers), :mod:`.pricing` (posted
price per SCU), :mod:`.rating` (run segments -> usage records and charges), :mod:`.ledger`
(posting rules: every transaction balances), :mod:`.quotas` (what trial quotas cover),
:mod:`.offers` (providers' offers and reservations) and :mod:`.market` (offers as the engine's
prices). Their database side is :mod:`suanwang.server.models.billing`.
"""
