"""instances.hold: a billing hold kept apart from the status

A suspended or terminated instance is held until unsuspend, reactivate or delete. Kept only as its
status, the hold was lost while the instance worked (a backup of a suspended instance showed
`backing_up`) and when a command failed on it (`error`, from which `start` served it). This
revision adds the column and fills it from what the store shows:

    suspended, terminated                       held so
    an open suspend or terminate                held as that command will leave it
    an open operation begun on a held instance  held as it was
    error after a failed command that had begun on a held instance (or was a suspend or a
    terminate): held, and resting in its hold again, as the status machine now leaves it

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOLDS = ("suspended", "terminated")
TAKES = {"odoo.instance.suspend.v1": "suspended", "odoo.instance.terminate.v1": "terminated"}

instances = sa.table(
    "instances",
    sa.column("id", sa.String),
    sa.column("status", sa.String),
    sa.column("hold", sa.String),
    sa.column("current_operation_id", sa.String),
    sa.column("last_command_id", sa.String),
)
operations = sa.table(
    "operations",
    sa.column("id", sa.String),
    sa.column("command_id", sa.String),
    sa.column("kind", sa.String),
    sa.column("state", sa.String),
    sa.column("status_before", sa.String),
)


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("instances") as batch:  # batch: SQLite cannot alter in place
        batch.add_column(sa.Column("hold", sa.String(length=16), nullable=True))
    bind = op.get_bind()
    for status in HOLDS:
        bind.execute(instances.update().where(instances.c.status == status).values(hold=status))
    working = bind.execute(
        sa.select(instances.c.id, operations.c.kind, operations.c.status_before).join(
            operations, operations.c.id == instances.c.current_operation_id
        )
    ).all()
    for instance_id, kind, before in working:
        hold = _held(kind, before)
        if hold is not None:
            bind.execute(instances.update().where(instances.c.id == instance_id).values(hold=hold))
    failed = bind.execute(
        sa.select(instances.c.id, operations.c.kind, operations.c.status_before)
        .join(operations, operations.c.command_id == instances.c.last_command_id)
        .where(instances.c.status == "error", operations.c.state == "failed")
    ).all()
    for instance_id, kind, before in failed:
        hold = _held(kind, before)  # a failed unsuspend or reactivate left the hold too
        if hold is not None:
            bind.execute(
                instances.update()
                .where(instances.c.id == instance_id)
                .values(hold=hold, status=hold)
            )


def _held(kind: str, before: str | None) -> str | None:
    """The hold of an instance whose operation of `kind` began in `before`."""
    return TAKES.get(kind) or (before if before in HOLDS else None)


def downgrade() -> None:
    """Undo this revision (statuses stay: a held instance rests in its hold's status)."""
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("hold")
