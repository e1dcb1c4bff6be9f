"""Moves the outbox to the broker with publisher confirms, restart-safe.

The relay claims events in the order they were recorded (a lease, so several relays never take
the same rows), publishes them and marks the confirmed ones published in one transaction; what
could not be published is released for the next turn. Two ways drive it: `publish_pending`
publishes on a blocking channel and waits for each confirm (the watcher, one event now and then),
and the consumer's `PromptRelay` (consumers/prompt_relay.py) claims and marks on its own thread
while the connection thread publishes and collects the confirms asynchronously.

Events are published `mandatory`; an event no queue is bound to comes back as unroutable. The
broker has then seen it and nobody subscribes: it is logged and marked published, so a missing
subscriber cannot stall the outbox.

Each publish is a PRODUCER span in the trace of the work that recorded the event (its stored
`traceparent`), and the confirm is measured twice: from the event's recording (publish
latency) and, for an event about an instance that had just become Ready, from that moment.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

import pika.exceptions
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import BasicProperties

from messages.envelope import CLOUDEVENTS_CONTENT_TYPE
from store.database import StoreUnavailableError
from store.outbox import OutboxRelayStore, PendingEvent
from telemetry.messaging import SEND, rabbitmq_attributes
from telemetry.metrics import METRICS
from telemetry.tracing import extracted

log = logging.getLogger(__name__)
tracer = trace.get_tracer("instance_service.relay")

OUTAGE_REMINDER_SECONDS = 30.0
"""While the state database does not answer, the relay says so once, then this often."""

T = TypeVar("T")


class OutboxRelay:
    """Claims recorded events and completes them once the broker has answered."""

    def __init__(
        self,
        store: OutboxRelayStore,
        batch: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.batch = batch
        self._clock = clock
        self._outage: tuple[float, float] | None = None
        """(since, last said) while the database does not answer."""

    def claim(self) -> list[PendingEvent]:
        """Up to `batch` events to publish, oldest first; none while the database is away.

        The relay turns several times a second, so an outage is logged when it starts, every
        OUTAGE_REMINDER_SECONDS while it lasts, and when it ends.
        """
        return self._answered(lambda: self.store.claim(self.batch), [])

    def complete(self, published: list[str], released: list[str]) -> None:
        """Mark what the broker has (one transaction) and give back what it has not.

        A database away now leaves the events claimed: their lease ends and they are published
        again under the same ids, which the contract allows.
        """
        self._answered(lambda: self.store.mark_published(published), None)
        self._answered(lambda: self.store.release(released), None)

    def publish_pending(self, channel: BlockingChannel, *, until_empty: bool = False) -> int:
        """Publish what is claimable on a blocking channel; return how many the broker confirmed."""
        published = 0
        while batch := self.claim():
            done: list[str] = []
            try:
                for pending in batch:
                    _publish_one(channel, pending)
                    done.append(pending.event_id)
            finally:
                self.complete(done, [p.event_id for p in batch if p.event_id not in done])
            published += len(done)
            if not until_empty:
                break
        return published

    def backlog(self) -> int | None:
        """How many events wait to be published (None: the database does not answer)."""
        try:
            return self.store.backlog()
        except StoreUnavailableError:
            return None

    def oldest_age(self) -> float | None:
        """Seconds the oldest unpublished event has waited (0: none waits; None: the database
        does not answer)."""
        try:
            oldest = self.store.oldest_waiting()
        except StoreUnavailableError:
            return None
        return 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())

    def _answered(self, work: Callable[[], T], instead: T) -> T:
        """`work`'s result, or `instead` while the database does not answer (logged)."""
        try:
            result = work()
        except StoreUnavailableError as error:
            self._unavailable(error)
            return instead
        if self._outage is not None:
            since, _ = self._outage
            self._outage = None
            log.info("outbox publishing resumed", extra={"seconds": self._since(since)})
        return result

    def _unavailable(self, error: StoreUnavailableError) -> None:
        now = self._clock()
        if self._outage is None:
            self._outage = (now, now)
            log.warning(
                "outbox not published: state database unavailable", extra={"error": str(error)}
            )
            return
        since, said = self._outage
        if now - said >= OUTAGE_REMINDER_SECONDS:
            self._outage = (since, now)
            log.warning(
                "outbox still not published",
                extra={"error": str(error), "seconds": self._since(since)},
            )

    def _since(self, moment: float) -> float:
        return round(self._clock() - moment, 1)


@contextmanager
def publish_span(pending: PendingEvent) -> Iterator[None]:
    """The PRODUCER span of one event's publish, in the trace that recorded it."""
    with tracer.start_as_current_span(
        f"{pending.exchange} publish",
        context=extracted(pending.headers),
        kind=SpanKind.PRODUCER,
        attributes=rabbitmq_attributes(
            SEND,
            exchange=pending.exchange,
            routing_key=pending.routing_key,
            message_id=pending.event_id,
            body_size=len(pending.body),
        ),
    ):
        yield


def event_properties(pending: PendingEvent) -> BasicProperties:
    """The contract's AMQP properties of an event."""
    return BasicProperties(
        content_type=CLOUDEVENTS_CONTENT_TYPE,
        delivery_mode=2,
        message_id=pending.event_id,
        headers=pending.headers,
    )


def unroutable(pending: PendingEvent) -> None:
    """Say that no queue took an event (it counts as published)."""
    log.warning(
        "event not routed to any queue",
        extra={"event_id": pending.event_id, "type": pending.routing_key},
    )


def confirmed(pending: PendingEvent) -> None:
    """Measure an event the broker has confirmed."""
    now = datetime.now(UTC)
    METRICS.published(
        pending.routing_key,
        (now - pending.created_at).total_seconds(),
        (now - pending.ready_at).total_seconds() if pending.ready_at is not None else None,
    )


def _publish_one(channel: BlockingChannel, pending: PendingEvent) -> None:
    """Publish one event and wait for its confirm, in a PRODUCER span; measure how long it took."""
    with publish_span(pending):
        try:
            channel.basic_publish(
                pending.exchange,
                pending.routing_key,
                pending.body,
                event_properties(pending),
                mandatory=True,
            )
        except pika.exceptions.UnroutableError:
            unroutable(pending)
    confirmed(pending)
