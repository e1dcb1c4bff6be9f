"""The consumer's relay against a real state database and a fake of our own connection port:
claims on a kick, publishes in recorded order, marks what the broker confirmed, releases what it
refused or lost, and flushes before a shutdown closes the connection; events a worker recorded
claimed for it are published without a claim, and taken by a poll once their publisher died."""

import queue
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from pika.spec import BasicProperties
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from consumers.confirms import OnOutcome, Outcome
from consumers.prompt_relay import PromptRelay
from consumers.relay import OutboxRelay
from messages.events import FleetReconciledData, FleetReconciledEvent
from store.ledger import Ledger, Record, enqueue
from store.outbox import Claim, OutboxRelayStore, PendingEvent
from store.records import Outcome as Answered
from tests.catalog import MACHINE
from tests.store.conftest import command


class FakeLink:
    """Our own port: runs the relay's I/O work on the calling thread and records publishes;
    the test decides what the broker answers."""

    def __init__(self) -> None:
        self.published: queue.SimpleQueue[tuple[str, OnOutcome]] = queue.SimpleQueue()
        self.open = True

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> bool:
        if self.open:
            callback()
        return self.open

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: BasicProperties,
        on_outcome: OnOutcome,
    ) -> None:
        self.published.put((properties.message_id, on_outcome))

    def take(self, count: int) -> list[tuple[str, OnOutcome]]:
        return [self.published.get(timeout=10) for _ in range(count)]


@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    return sqlite_engine


def _record(engine: Engine, count: int) -> list[str]:
    cause = command("odoo.fleet.reconcile.v1")
    events = [
        FleetReconciledEvent.caused_by(cause, FleetReconciledData(checked=i, repaired=0, orphans=0))
        for i in range(count)
    ]
    with Session(engine) as session, session.begin():
        enqueue(session, events)
    return [event.id for event in events]


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)


def test_a_kick_publishes_in_order_and_confirmed_events_are_marked(engine: Engine) -> None:
    store = OutboxRelayStore(engine)
    relay = PromptRelay(OutboxRelay(store), interval_seconds=60)  # the timer never turns here
    link = FakeLink()
    relay.start()
    try:
        relay.attach(link)
        ids = _record(engine, 3)
        relay.kick()
        sent = link.take(3)
        assert [event_id for event_id, _ in sent] == ids
        for _, told in sent:
            told(Outcome.CONFIRMED)
        _until(lambda: store.backlog() == 0)
    finally:
        relay.stop()


def test_lost_events_go_again_refused_ones_after_their_lease_and_unroutable_ones_are_done(
    engine: Engine,
) -> None:
    store = OutboxRelayStore(engine, lease_seconds=1.0)
    relay = PromptRelay(OutboxRelay(store), interval_seconds=60)
    link = FakeLink()
    relay.start()
    try:
        relay.attach(link)
        ids = _record(engine, 3)
        relay.kick()
        (first, told_first), (second, told_second), (third, told_third) = link.take(3)
        assert [first, second, third] == ids
        told_first(Outcome.UNROUTABLE)
        told_second(Outcome.NACKED)
        told_third(Outcome.LOST)
        (again, told_again) = link.take(1)[0]  # released: claimed again at once
        assert again == third
        told_again(Outcome.CONFIRMED)
        _until(lambda: store.backlog() == 1)
        assert link.published.empty()  # the refused one waits for its lease to end
        time.sleep(1.2)
        relay.kick()
        (late, told_late) = link.take(1)[0]
        assert late == second
        told_late(Outcome.CONFIRMED)
        _until(lambda: store.backlog() == 0)
    finally:
        relay.stop()


def test_a_detached_link_gives_back_what_it_held_and_a_flush_waits_for_the_answers(
    engine: Engine,
) -> None:
    store = OutboxRelayStore(engine)
    relay = PromptRelay(OutboxRelay(store), interval_seconds=60)
    old, new = FakeLink(), FakeLink()
    relay.start()
    try:
        relay.attach(old)
        ids = _record(engine, 2)
        relay.kick()
        old.take(2)  # published, never answered: the connection died
        old.open = False
        relay.detach(old)
        relay.attach(new)
        flushed = threading.Event()
        relay.flush(flushed.set)
        sent = new.take(2)
        assert [event_id for event_id, _ in sent] == ids
        assert not flushed.wait(0.3)  # unanswered yet
        for _, told in sent:
            told(Outcome.CONFIRMED)
        assert flushed.wait(10)
        assert store.backlog() == 0
    finally:
        relay.stop()


def _record_claimed(engine: Engine, relay: PromptRelay, count: int) -> list[PendingEvent]:
    """`count` fleet commands recorded in one transaction, their events claimed by `relay`."""
    records = []
    for index in range(count):
        cause = command("odoo.fleet.reconcile.v1", command_id=f"reconcile-{uuid.uuid4()}")
        data = FleetReconciledData(checked=index, repaired=0, orphans=0)
        records.append(
            Record(cause, Answered.SUCCEEDED, FleetReconciledEvent.caused_by(cause, data))
        )
    recorded = Ledger(engine, MACHINE).record_many(
        records, claim=Claim(relay.holder, relay.lease_seconds)
    )
    return [event for answer in recorded for event in answer.events]


class _CountingRelay(OutboxRelay):
    """Our own relay, counting its claims (each a transaction)."""

    claims = 0

    def claim(self) -> list[PendingEvent]:
        self.claims += 1
        return super().claim()


def test_events_handed_over_are_published_without_a_claim_and_marked(engine: Engine) -> None:
    store = OutboxRelayStore(engine)
    counting = _CountingRelay(store)
    relay = PromptRelay(counting, interval_seconds=60)
    link = FakeLink()
    relay.start()
    try:
        relay.attach(link)
        events = _record_claimed(engine, relay, 3)
        assert store.claim() == []  # written claimed: no relay's poll takes them
        relay.publish(events)
        sent = link.take(3)
        assert [event_id for event_id, _ in sent] == [e.event_id for e in events]
        for _, told in sent:
            told(Outcome.CONFIRMED)
        _until(lambda: store.backlog() == 0)
        assert counting.claims == 1  # the one a new link takes, for what may be left
        relay.kick()  # nothing left to claim
        with pytest.raises(queue.Empty):
            link.published.get(timeout=0.3)
    finally:
        relay.stop()


def test_events_handed_over_without_a_link_are_released_for_the_next_one(
    engine: Engine,
) -> None:
    store = OutboxRelayStore(engine)
    relay = PromptRelay(OutboxRelay(store), interval_seconds=60)
    link = FakeLink()
    relay.start()
    try:
        events = _record_claimed(engine, relay, 2)
        relay.publish(events)  # between connections: given back at once
        relay.attach(link)
        relay.kick()
        sent = link.take(2)
        assert [event_id for event_id, _ in sent] == [e.event_id for e in events]
        for _, told in sent:
            told(Outcome.CONFIRMED)
        _until(lambda: store.backlog() == 0)
    finally:
        relay.stop()


def test_events_whose_publisher_died_are_taken_once_their_lease_ends(engine: Engine) -> None:
    dead = PromptRelay(OutboxRelay(OutboxRelayStore(engine, lease_seconds=1.0)), 60)
    events = _record_claimed(engine, dead, 2)  # recorded, never handed over: it died
    store = OutboxRelayStore(engine)
    relay = PromptRelay(OutboxRelay(store), interval_seconds=60)
    link = FakeLink()
    relay.start()
    try:
        relay.attach(link)
        relay.kick()
        with pytest.raises(queue.Empty):
            link.published.get(timeout=0.3)  # still its publisher's
        time.sleep(1.0)
        relay.kick()
        sent = link.take(2)
        assert [event_id for event_id, _ in sent] == [e.event_id for e in events]
        for _, told in sent:
            told(Outcome.CONFIRMED)
        _until(lambda: store.backlog() == 0)
    finally:
        relay.stop()
