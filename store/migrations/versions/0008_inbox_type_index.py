"""inbox: an index on (command_type, recorded_at)

The freshness metrics (store/freshness.py) ask for the newest succeeded answer of one command
type, the fleet reconcile's; without the index that reads the whole inbox on every collection.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("inbox") as batch:
        batch.create_index("ix_inbox_type_recorded", ["command_type", "recorded_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("inbox") as batch:
        batch.drop_index("ix_inbox_type_recorded")
