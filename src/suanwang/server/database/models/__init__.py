"""ORM tables (control-plane.md, billing.md), one module per concern, all importable from here.

* :mod:`.types`: column types (UTC-aware timestamps, exact decimals);
* :mod:`.base`: the declarative base, fixed constraint names, ``utcnow`` and ``new_id``;
* :mod:`.tenants`: tenants and center owners; :mod:`.jobs`: jobs, job events, run fences,
  drains; :mod:`.apps`: published apps; :mod:`.billing`: settings, ledger, usage records,
  trial quotas; :mod:`.trading`: offers and reservations; :mod:`.governance`: tenants'
  compute quotas, classes and budgets, their changes, and their saved fair-share usage;
  :mod:`.audit`: the append-only audit log (tenants' API keys are in :mod:`.tenants`);
  :mod:`.cluster`: leaders' terms, the cluster's members (replicas and workers) and the
  centers they hold, and centers' reachability;
  :mod:`.agents`: agent centers and the runs handed to their agents.

Timestamps are UTC-aware in Python everywhere; SQLite (which has no time zone type) stores them
as naive UTC and :class:`UTCDateTime` attaches UTC again on the way out. Ids are UUID strings
(``String(36)``) so both databases compare and index them the same way. Importing this package
registers every table on ``Base.metadata`` (what migrations and ``create_all`` see).
"""

from suanwang.server.database.models.agents import AgentRun, CenterAgent
from suanwang.server.database.models.apps import PublishedApp
from suanwang.server.database.models.audit import AuditEntry
from suanwang.server.database.models.base import NAMING, Base, new_id, utcnow
from suanwang.server.database.models.billing import (
    Account,
    BillingSetting,
    LedgerPosting,
    LedgerTransaction,
    QuotaGrant,
    QuotaUse,
    UsageRecord,
)
from suanwang.server.database.models.cluster import CenterHealthRow, ClusterMember, LeaderTerm
from suanwang.server.database.models.governance import QuotaChange, TenantQuotaRow, TenantUsage
from suanwang.server.database.models.jobs import CenterDrain, JobEvent, JobRow, RunFence
from suanwang.server.database.models.tenants import ApiKey, CenterOwner, Tenant, TenantRole
from suanwang.server.database.models.trading import OfferRow, ReservationRow
from suanwang.server.database.models.types import Money, Quantity, UnitPrice, UTCDateTime

__all__ = [
    "NAMING",
    "Account",
    "AgentRun",
    "ApiKey",
    "AuditEntry",
    "Base",
    "BillingSetting",
    "CenterAgent",
    "CenterDrain",
    "CenterHealthRow",
    "CenterOwner",
    "ClusterMember",
    "JobEvent",
    "JobRow",
    "LeaderTerm",
    "LedgerPosting",
    "LedgerTransaction",
    "Money",
    "OfferRow",
    "PublishedApp",
    "Quantity",
    "QuotaChange",
    "QuotaGrant",
    "QuotaUse",
    "ReservationRow",
    "RunFence",
    "Tenant",
    "TenantQuotaRow",
    "TenantRole",
    "TenantUsage",
    "UTCDateTime",
    "UnitPrice",
    "UsageRecord",
    "new_id",
    "utcnow",
]
