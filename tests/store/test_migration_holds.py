"""Revision 0005 fills `instances.hold` from what an older store shows, on both databases."""

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from store.migrate import downgrade, upgrade
from store.models import Instance, Operation

# instance: (status, its operation (kind, state, status before) or None, open?)
ROWS: dict[str, tuple[str, tuple[str, str, str] | None, bool]] = {
    "suspended": ("suspended", None, False),
    "terminated": ("terminated", None, False),
    "running": ("running", None, False),
    "backing-up-held": ("backing_up", ("backup", "running", "suspended"), True),
    "terminating": ("stopping", ("terminate", "running", "running"), True),
    "failed-on-hold": ("error", ("resize", "failed", "suspended"), False),
    "failed-unsuspend": ("error", ("unsuspend", "failed", "suspended"), False),
    "failed-suspend": ("error", ("suspend", "failed", "running"), False),
    "failed-unheld": ("error", ("restart", "failed", "running"), False),
}
EXPECTED = {
    "suspended": ("suspended", "suspended"),
    "terminated": ("terminated", "terminated"),
    "running": ("running", None),
    "backing-up-held": ("backing_up", "suspended"),
    "terminating": ("stopping", "terminated"),
    "failed-on-hold": ("suspended", "suspended"),
    "failed-unsuspend": ("suspended", "suspended"),
    "failed-suspend": ("suspended", "suspended"),
    "failed-unheld": ("error", None),
}


def test_holds_are_filled_from_statuses_and_operations(engine: Engine) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        for name, (status, operation, open_) in ROWS.items():
            session.add(
                Instance(
                    id=name,
                    customer_id="c",
                    subdomain=name,
                    odoo_version="17.0",
                    cpu_millicores=500,
                    memory_mib=1024,
                    storage_gib=5,
                    status=status,
                    spec={},
                    last_command_time=now,
                    last_command_id=f"command-{name}",
                    current_operation_id=f"op-{name}" if open_ else None,
                    kubernetes_names={},
                )
            )
            if operation is not None:
                kind, state, before = operation
                session.add(
                    Operation(
                        id=f"op-{name}",
                        instance_id=name,
                        command_id=f"command-{name}",
                        kind=f"odoo.instance.{kind}.v1",
                        state=state,
                        step="started",
                        status_before=before,
                        result={},
                    )
                )
    downgrade(engine, "0004")
    upgrade(engine)
    with Session(engine) as session:
        found = {row.id: (row.status, row.hold) for row in session.scalars(select(Instance))}
    assert found == EXPECTED
