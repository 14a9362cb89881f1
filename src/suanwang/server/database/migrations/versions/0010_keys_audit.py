"""API keys and the audit log.

``api_keys``: a tenant's keys (many per tenant), each with a prefix to name it by, a name,
read-only or not, an expiry and a revocation time. Every tenant's existing key is copied in
(prefix ``old_`` + 12 hex digits of its digest: the key's text was never stored), so every key
keeps working. ``tenants.api_key_hash`` stays (SQLite cannot drop a UNIQUE column without
rebuilding ``tenants``, and that would cascade-delete every row referring to a tenant).

``audit_log``: append-only, enforced by triggers that refuse UPDATE and DELETE (on PostgreSQL
TRUNCATE too). Downgrading puts each tenant's newest usable key back in
``tenants.api_key_hash`` (its newest unrevoked one) and drops both tables (the audit log
with them).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from suanwang.server.database.migrations.columns import bigid, ts

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSAL = "audit_log is append-only"
PG_FUNCTION = f"""
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{REFUSAL}';
END $$
"""


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        ts("created_at", nullable=False),
        ts("expires_at", nullable=True),
        ts("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_api_keys_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )  # fmt: skip
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant_id", "created_at"])
    op.execute(
        "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, name, read_only, created_at) "
        "SELECT id, id, 'old_' || substr(api_key_hash, 1, 12), api_key_hash, 'default', "
        "false, created_at FROM tenants"
    )
    op.create_table(
        "audit_log",
        sa.Column("id", bigid(), nullable=False, autoincrement=True),
        ts("at", nullable=False),
        sa.Column("via", sa.String(8), nullable=False),
        sa.Column("actor_tenant_id", sa.String(36), nullable=True),
        sa.Column("actor_name", sa.String(100), nullable=False),
        sa.Column("actor_key_prefix", sa.String(16), nullable=True),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at", "id"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor_tenant_id", "id"])
    op.create_index("ix_audit_log_action", "audit_log", ["action", "id"])
    if op.get_context().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
            )


def downgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    if postgres:
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("DROP TRIGGER audit_log_no_delete")
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.drop_index("ix_audit_log_actor", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    # the tenant's newest unrevoked key (else its newest) is its one key again (expiry is
    # not known before 0010: an expired key works again); digests are unique across tenants
    op.execute(
        "UPDATE tenants SET api_key_hash = (SELECT k.key_hash FROM api_keys k "
        "WHERE k.tenant_id = tenants.id ORDER BY k.revoked_at IS NULL DESC, k.created_at DESC, "
        "k.id LIMIT 1) WHERE EXISTS (SELECT 1 FROM api_keys k WHERE k.tenant_id = tenants.id) "
    )
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_table("api_keys")
