"""domains: customers' own domains, each held by one instance across the fleet

A row per domain (its primary key is the fleet-wide uniqueness the per-instance locks cannot
give): `adding` while a domain.add is under way (reserved), `active` once served. A failed or
rolled-back add and a domain.remove delete the row; a delete frees all of an instance's domains,
a terminate keeps them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "domains",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("command_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_domains_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_domains")),
    )
    with op.batch_alter_table("domains") as batch:
        batch.create_index(batch.f("ix_domains_instance_id"), ["instance_id"], unique=False)


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("domains") as batch:
        batch.drop_index(batch.f("ix_domains_instance_id"))
    op.drop_table("domains")
