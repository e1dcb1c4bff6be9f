"""The rows a batch of commands is decided on, read with SQLAlchemy Core in one query per table.

Admission and recording decide in Python over this snapshot, never row by row through the ORM:
one `SELECT ... WHERE key IN (...)` per table for the whole batch, then one statement per kind
of write (store/bulk.py). The snapshot is kept up to date as the batch's commands begin or end,
so a later command of a batch sees what an earlier one did, exactly as it would one by one (a
provision takes its subdomain; a begun command sets a working status the next one waits behind).

Instance rows are read `FOR UPDATE` by writers (PostgreSQL; SQLite writers are serial anyway):
whoever reads the row next waits for this transaction to commit (store/locks.py says why).
"""

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BindParameter, Table, bindparam, select
from sqlalchemy.engine import Connection

from store.bulk import KEY
from store.instances import instance_record_of
from store.lifecycle import InstanceStatus
from store.models import Backup, Domain, Instance, Operation
from store.records import InstanceRecord

INSTANCES: Table = Instance.__table__  # type: ignore[assignment]
OPERATIONS: Table = Operation.__table__  # type: ignore[assignment]
BACKUPS: Table = Backup.__table__  # type: ignore[assignment]
DOMAINS: Table = Domain.__table__  # type: ignore[assignment]

_IDS: BindParameter[Any] = bindparam("ids", expanding=True)

_INSTANCES = select(INSTANCES).where(INSTANCES.c.id.in_(_IDS)).order_by(INSTANCES.c.id)
_INSTANCES_LOCKED = _INSTANCES.with_for_update()
_OPERATIONS = select(
    OPERATIONS.c.command_id,
    OPERATIONS.c.id,
    OPERATIONS.c.state,
    OPERATIONS.c.status_before,
    OPERATIONS.c.result,
).where(OPERATIONS.c.command_id.in_(_IDS))
_LIVE_SUBDOMAINS = select(INSTANCES.c.id, INSTANCES.c.subdomain).where(
    INSTANCES.c.subdomain.in_(_IDS), INSTANCES.c.status != InstanceStatus.DELETED.value
)
_NAMES: BindParameter[Any] = bindparam("names", expanding=True)
_DOMAINS = select(
    DOMAINS.c.domain, DOMAINS.c.instance_id, DOMAINS.c.state, DOMAINS.c.command_id
).where(DOMAINS.c.domain.in_(_NAMES) | DOMAINS.c.instance_id.in_(_IDS))
_BACKUPS = select(
    BACKUPS.c.id,
    BACKUPS.c.instance_id,
    BACKUPS.c.status,
    BACKUPS.c.location,
    BACKUPS.c.odoo_version,
).where(BACKUPS.c.id.in_(_IDS))


@dataclass
class OperationRow:
    """A command's operation, as admission and recording read it."""

    id: str
    state: str
    status_before: str | None
    result: dict[str, Any]


@dataclass(frozen=True)
class BackupRow:
    """A backup, as admission checks a backup or restore command against it."""

    id: str
    instance_id: str
    status: str
    location: str | None
    odoo_version: str | None


@dataclass
class DomainRow:
    """A customer's domain and the instance that holds it (store/models.py's Domain)."""

    domain: str
    instance_id: str
    state: str
    command_id: str


ADDING = "adding"
ACTIVE = "active"


@dataclass
class Snapshot:
    """The batch's rows: instances (column name -> value), operations by command id, backups
    by id, and which live instances hold which subdomain. `created` and `changed` name the
    instances to insert and to update when the batch is written."""

    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, OperationRow] = field(default_factory=dict)
    backups: dict[str, BackupRow] = field(default_factory=dict)
    subdomains: dict[str, set[str]] = field(default_factory=dict)
    domains: dict[str, DomainRow] = field(default_factory=dict)
    """Customers' domains by name: those the batch's domain commands name, and every domain of
    the instances it reads."""
    created: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)

    def instance(self, instance_id: str) -> InstanceRecord | None:
        """An instance as it stands now in the batch."""
        row = self.instances.get(instance_id)
        return instance_record_of(row, self.served_at(instance_id)) if row is not None else None

    def served_at(self, instance_id: str) -> list[str]:
        """The active domains of an instance."""
        return [
            d.domain
            for d in self.domains.values()
            if d.instance_id == instance_id and d.state == ACTIVE
        ]

    def domains_of(self, instance_id: str) -> list[DomainRow]:
        """Every domain an instance holds, active or being added."""
        return [d for d in self.domains.values() if d.instance_id == instance_id]

    def subdomain_holder(self, subdomain: str, other_than: str) -> str | None:
        """A live instance other than `other_than` that holds `subdomain`, if any."""
        holders = self.subdomains.get(subdomain, set()) - {other_than}
        return min(holders) if holders else None

    def create(self, row: dict[str, Any]) -> None:
        """Add an instance the batch creates."""
        self.instances[row["id"]] = row
        self.created.add(row["id"])
        self.subdomains.setdefault(row["subdomain"], set()).add(row["id"])

    def updates(self, ids: Collection[str], columns: Sequence[str]) -> list[dict[str, Any]]:
        """The rows that write these instances' `columns`, by primary key (as `bulk.KEY`), in
        the order of their ids (`bulk.update_rows`)."""
        rows = (self.instances[i] for i in sorted(ids))
        return [{KEY: row["id"], **{column: row[column] for column in columns}} for row in rows]

    def read_instances(self, connection: Connection, ids: Collection[str], *, lock: bool) -> None:
        """Read these instances (`lock`: FOR UPDATE, for a writer)."""
        if ids:
            query = _INSTANCES_LOCKED if lock else _INSTANCES
            for row in connection.execute(query, {"ids": sorted(ids)}):
                self.instances[row.id] = dict(row._mapping)

    def read_operations(self, connection: Connection, command_ids: Collection[str]) -> None:
        """Read the operations these commands opened."""
        if command_ids:
            for row in connection.execute(_OPERATIONS, {"ids": list(command_ids)}):
                self.operations[row.command_id] = OperationRow(
                    row.id, row.state, row.status_before, dict(row.result)
                )

    def read_subdomains(self, connection: Connection, subdomains: Iterable[str]) -> None:
        """Read which live instances hold these subdomains."""
        wanted = set(subdomains)
        if wanted:
            for row in connection.execute(_LIVE_SUBDOMAINS, {"ids": list(wanted)}):
                self.subdomains.setdefault(row.subdomain, set()).add(row.id)

    def read_domains(
        self, connection: Connection, names: Iterable[str], instance_ids: Iterable[str]
    ) -> None:
        """Read these domains, and every domain of these instances (one query)."""
        wanted, ids = sorted(set(names)), sorted(set(instance_ids))
        if wanted or ids:
            for row in connection.execute(_DOMAINS, {"names": wanted, "ids": ids}):
                self.domains[row.domain] = DomainRow(
                    row.domain, row.instance_id, row.state, row.command_id
                )

    def read_backups(self, connection: Connection, backup_ids: Iterable[str]) -> None:
        """Read these backups."""
        wanted = set(backup_ids)
        if wanted:
            for row in connection.execute(_BACKUPS, {"ids": list(wanted)}):
                self.backups[row.id] = BackupRow(
                    row.id, row.instance_id, row.status, row.location, row.odoo_version
                )
