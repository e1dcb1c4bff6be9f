"""The outbox relay's side of the store: claim unpublished events in order, mark them published.

Several relays may run at once. A relay claims a batch for a while (a lease): a conditional
update that only takes rows nobody holds, so two relays never claim the same row, on
PostgreSQL (the second update re-checks the row after the first commits) as on SQLite (one
writer at a time). A relay that dies leaves its claims to expire; its events are then
published again, with the same event id, which the contract allows.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from store.database import StoreUnavailableError, traced_session
from store.models import OutboxEntry, utcnow


@dataclass(frozen=True)
class PendingEvent:
    """An event to publish, as recorded."""

    seq: int
    event_id: str
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any]
    created_at: datetime
    ready_at: datetime | None = None


@dataclass(frozen=True)
class Claim:
    """Outbox rows written already claimed by whoever publishes them as soon as they commit
    (`Ledger.record_many(..., claim=...)`): a relay leaves them alone for `seconds`, and takes
    them after that if they were never marked published (their publisher died)."""

    holder: str
    seconds: float = 30


@contextmanager
def _transaction(engine: Engine, name: str) -> Iterator[Session]:
    """One transaction; a database failure surfaces as StoreUnavailableError."""
    try:
        with traced_session(engine, f"outbox {name}", write=True) as session:
            yield session
    except SQLAlchemyError as error:
        reason = str(error).splitlines()[0]
        raise StoreUnavailableError(f"outbox unavailable: {reason}") from error


class OutboxRelayStore:
    """Claims and completes outbox rows on behalf of one relay."""

    def __init__(self, engine: Engine, relay_id: str | None = None, lease_seconds: float = 30):
        self.engine = engine
        self.relay_id = relay_id or f"relay-{uuid.uuid4().hex[:12]}"
        self.lease = timedelta(seconds=lease_seconds)

    def claim(self, limit: int = 100) -> list[PendingEvent]:
        """Take up to `limit` unpublished events nobody holds, oldest first."""
        now = utcnow()
        token = f"{self.relay_id}:{uuid.uuid4().hex[:8]}"
        free = or_(OutboxEntry.claimed_until.is_(None), OutboxEntry.claimed_until < now)
        oldest = (
            select(OutboxEntry.seq)
            .where(OutboxEntry.published_at.is_(None), free)
            .order_by(OutboxEntry.seq)
            .limit(limit)
        )
        with _transaction(self.engine, "claim") as session:
            session.execute(
                update(OutboxEntry)
                # Both conditions again outside the subquery: PostgreSQL re-checks only these
                # on a row another relay changed meanwhile (claimed, or already published).
                .where(
                    OutboxEntry.seq.in_(oldest.scalar_subquery()),
                    OutboxEntry.published_at.is_(None),
                    free,
                )
                .values(claimed_by=token, claimed_until=now + self.lease)
                .execution_options(synchronize_session=False)
            )
            rows = session.scalars(
                select(OutboxEntry).where(OutboxEntry.claimed_by == token).order_by(OutboxEntry.seq)
            ).all()
            return [
                PendingEvent(
                    seq=r.seq,
                    event_id=r.event_id,
                    exchange=r.exchange,
                    routing_key=r.routing_key,
                    body=r.body,
                    headers=dict(r.headers),
                    created_at=r.created_at,
                    ready_at=r.ready_at,
                )
                for r in rows
            ]

    def mark_published(self, event_ids: list[str]) -> None:
        """Record that the broker confirmed these events."""
        self._unclaim("mark_published", event_ids, published_at=utcnow())

    def release(self, event_ids: list[str]) -> None:
        """Give claims back (e.g. the broker was unreachable) so they are tried again at once."""
        self._unclaim("release", event_ids, OutboxEntry.published_at.is_(None))

    def _unclaim(
        self, name: str, event_ids: list[str], *where: ColumnElement[bool], **values: Any
    ) -> None:
        """Drop the claims on these events (those `where` holds for), setting `values` as well."""
        if not event_ids:
            return
        with _transaction(self.engine, name) as session:
            session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.event_id.in_(event_ids), *where)
                .values(claimed_by=None, claimed_until=None, **values)
                .execution_options(synchronize_session=False)
            )

    def backlog(self) -> int:
        """How many events wait to be published."""
        with _transaction(self.engine, "backlog") as session:
            count = session.scalar(
                select(func.count())
                .select_from(OutboxEntry)
                .where(OutboxEntry.published_at.is_(None))
            )
            return int(count or 0)

    def oldest_waiting(self) -> datetime | None:
        """When the oldest event still waiting to be published was recorded (None: none waits)."""
        with _transaction(self.engine, "oldest waiting") as session:
            return session.scalar(
                select(OutboxEntry.created_at)
                .where(OutboxEntry.published_at.is_(None))
                .order_by(OutboxEntry.seq)
                .limit(1)
            )
