"""backups.odoo_version: the Odoo version whose data a backup holds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("backups") as batch:  # batch: SQLite cannot alter in place
        batch.add_column(sa.Column("odoo_version", sa.String(length=16), nullable=True))


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("backups") as batch:
        batch.drop_column("odoo_version")
