"""The database side of billing: the pure rules of :mod:`suanwang.billing` written to and read
from the ledger tables (see docs/billing.md).

A thin layer over the rules (:mod:`suanwang.billing.pricing`, :mod:`~suanwang.billing.rating`,
:mod:`~suanwang.billing.ledger`, :mod:`~suanwang.billing.quotas`,
:mod:`~suanwang.billing.offers`), one module per concern, each importing only those below it:

* :mod:`.config` -- the operator's settings (``billing_settings``) and who must prepay;
* :mod:`.accounts` -- accounts, posting a ledger entry, balances, top-ups;
* :mod:`.payouts` -- what is due to a provider, paying it out;
* :mod:`.trading` -- offers and reservations (booked and paid, cancelled and refunded) and
  the offer-aware price book;
* :mod:`.metering` -- a job's runs from its events, rated into usage lines;
* :mod:`.rounds` -- work on many jobs, each in its own transaction;
* :mod:`.holds` -- the hold at submit and its repricing once the job is placed;
* :mod:`.quotas` -- trial quota grants and their consumption;
* :mod:`.settle` -- charging finished jobs;
* :mod:`.statements` -- invoices and settlements;
* :mod:`.verify` -- the ledger's invariants, checked.

Functions take ``session=`` and flush but do not commit, except those that work on many jobs
(:func:`.settle.settle_finished`, :func:`.holds.lower_holds`), which take ``sessions`` and
settle each job in its own transaction so that no two jobs' account locks are ever held
together.

Concurrency: every balance change is ``UPDATE accounts SET balance = balance + d`` in account
id order within one transaction that writes one ledger entry; a debit of a prepaid or held
account is conditional (``balance + d >= 0``) so balances never go negative, and the database
checks it too (``ck_accounts_non_negative``). Entries carry a unique ``ref`` (``hold:<job>``,
``charge:<job>``, ``topup:<key>``): writing one twice writes it once.
"""
