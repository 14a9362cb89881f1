"""Metering, rating and the double-entry ledger (issue 5); see docs/billing.md.

Pure modules (no I/O): :mod:`.money` (Decimal helpers), :mod:`.pricing` (posted price per SCU),
:mod:`.rating` (run segments -> usage records and charges), :mod:`.ledger` (posting rules: every
transaction balances). :mod:`.store` is the thin database layer on top of them.
"""
