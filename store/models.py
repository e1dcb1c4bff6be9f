"""Tables of the service's own state, as typed SQLAlchemy 2 models.

Timestamps are stored as UTC and always come back timezone-aware, on SQLite as on PostgreSQL.
"""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC (SQLite keeps no offset, so it is normalised here)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive values; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the store keeps only timezone-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


class Instance(Base):
    """One tenant's Odoo: what was asked for, what it is now, where it lives."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    subdomain: Mapped[str] = mapped_column(String(63))
    odoo_version: Mapped[str] = mapped_column(String(16))
    cpu_millicores: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    storage_gib: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), index=True)
    # A billing hold (suspended | terminated), apart from the status: it outlasts working
    # statuses and failures; only unsuspend, reactivate or delete lift it (store/lifecycle.py).
    hold: Mapped[str | None] = mapped_column(String(16))
    # What the provision asked for beyond the columns above, to tell a repeat from a conflict.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    last_command_time: Mapped[datetime]
    last_command_id: Mapped[str] = mapped_column(String(128))
    current_operation_id: Mapped[str | None] = mapped_column(String(36))
    kubernetes_names: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    url: Mapped[str | None] = mapped_column(String(300))
    internal_url: Mapped[str | None] = mapped_column(String(300))
    last_error: Mapped[str | None] = mapped_column(Text)
    backup_plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The plan's `backups` (every_hours, keep_*); None: the defaults."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # A subdomain is free again once its instance is deleted.
        Index(
            "uq_instances_live_subdomain",
            "subdomain",
            unique=True,
            sqlite_where=text("status != 'deleted'"),
            postgresql_where=text("status != 'deleted'"),
        ),
    )


class InboxEntry(Base):
    """The outcome of every command id that reached a terminal event: the idempotency record."""

    __tablename__ = "inbox"

    command_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    command_type: Mapped[str] = mapped_column(String(128))
    instance_id: Mapped[str | None] = mapped_column(String(36), index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # succeeded | failed | rejected
    terminal_event_id: Mapped[str] = mapped_column(String(36))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    # The newest answer of one command type (the last completed fleet reconcile, for its
    # freshness metric) without reading the whole inbox.
    __table_args__ = (Index("ix_inbox_type_recorded", "command_type", "recorded_at"),)


class Operation(Base):
    """A multi-step operation that outlives one delivery: redelivery, crash and scale-in safe."""

    __tablename__ = "operations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[str | None] = mapped_column(String(36), index=True)
    command_id: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    step: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    deadline: Mapped[datetime | None]
    status_before: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxEntry(Base):
    """An event recorded with the state change it reports, waiting to be published."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    exchange: Mapped[str] = mapped_column(String(255))
    routing_key: Mapped[str] = mapped_column(String(255))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[datetime | None]
    """When the instance this event reports on became Ready, if the command waited for that."""
    published_at: Mapped[datetime | None] = mapped_column(index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]


class Backup(Base):
    """A backup of one instance: where it is and how to check it."""

    __tablename__ = "backups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(128))
    location: Mapped[str | None] = mapped_column(String(1024))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    odoo_version: Mapped[str | None] = mapped_column(String(16))  # of the data it holds
    status: Mapped[str] = mapped_column(String(16))  # pending | completed | failed | pruned
    kind: Mapped[str] = mapped_column(String(16), server_default="manual")
    """scheduled | manual | safety | final: how long it is kept (store/retention.py)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    pruned_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_backups_instance_status", "instance_id", "status"),)


class Domain(Base):
    """A customer's own domain and the instance that holds it, one row per domain: the primary
    key makes a domain unique across the fleet (two instances racing for one: the second insert
    fails, and admission then answers `conflict`)."""

    __tablename__ = "domains"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    """adding (reserved by a domain.add under way) | active (served)."""
    command_id: Mapped[str] = mapped_column(String(128))
    """The domain.add that reserved it."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
