"""backups.kind and backups.pruned_at; instances.backup_plan: schedules and retention

Every backup gets its kind, which decides how long it is kept: `scheduled` (the service's own,
pruned grandfather-father-son), `manual` (asked for by a backup command), `safety` (taken by a
restore or an upgrade before it changes anything) and `final` (before a delete). Rows made before
are `final` when labelled so, `safety` when labelled "before ...", else `manual`. A pruned
backup keeps its row (status `pruned`, when in `pruned_at`) so its id stays taken.

instances.backup_plan holds the plan's `backups` object; NULL: the defaults.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

backups = sa.table("backups", sa.column("kind", sa.String), sa.column("label", sa.String))


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("backups") as batch:  # batch: SQLite cannot alter in place
        batch.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="manual")
        )
        batch.add_column(sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_backups_instance_status", ["instance_id", "status"])
    op.execute(
        backups.update().where(backups.c.label == "final backup before delete").values(kind="final")
    )
    op.execute(backups.update().where(backups.c.label.like("before %")).values(kind="safety"))
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("backup_plan", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("backup_plan")
    with op.batch_alter_table("backups") as batch:
        batch.drop_index("ix_backups_instance_status")
        batch.drop_column("pruned_at")
        batch.drop_column("kind")
