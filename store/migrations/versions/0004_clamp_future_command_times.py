"""instances.last_command_time never lies in the future

A command dated ahead of the service's clock used to become its instance's last command time, and
every later command (a billing suspend, a delete) was then rejected `stale`. Commands whose time is
more than the clock skew ahead are now refused; this revision repairs what such commands left:
each future last command time becomes the time the service recorded that command (its inbox row,
else when its operation began, else now).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from store.models import UtcDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

instances = sa.table(
    "instances",
    sa.column("id", sa.String),
    sa.column("last_command_time", UtcDateTime()),
    sa.column("last_command_id", sa.String),
)
inbox = sa.table(
    "inbox", sa.column("command_id", sa.String), sa.column("recorded_at", UtcDateTime())
)
operations = sa.table(
    "operations", sa.column("command_id", sa.String), sa.column("created_at", UtcDateTime())
)


def upgrade() -> None:
    """Apply this revision."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    future = bind.execute(
        sa.select(instances.c.id, instances.c.last_command_id).where(
            instances.c.last_command_time > now
        )
    ).all()
    for instance_id, command_id in future:
        recorded = bind.scalar(
            sa.select(inbox.c.recorded_at).where(inbox.c.command_id == command_id)
        ) or bind.scalar(
            sa.select(operations.c.created_at).where(operations.c.command_id == command_id)
        )
        bind.execute(
            instances.update()
            .where(instances.c.id == instance_id)
            .values(last_command_time=min(recorded or now, now))
        )


def downgrade() -> None:
    """Nothing to undo: the times clamped were never true."""
