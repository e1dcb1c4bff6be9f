"""The outbox hands each event to one relay at a time, oldest first, until it is published."""

import threading
import time

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from messages.events import FleetReconciledData, FleetReconciledEvent
from store.ledger import enqueue
from store.outbox import OutboxRelayStore
from tests.store.conftest import command


def _fill(engine: Engine, count: int) -> list[str]:
    cause = command("odoo.fleet.reconcile.v1")
    events = [
        FleetReconciledEvent.caused_by(cause, FleetReconciledData(checked=i, repaired=0, orphans=0))
        for i in range(count)
    ]
    with Session(engine) as session, session.begin():
        enqueue(session, events)
    return [event.id for event in events]


def test_claims_come_oldest_first_and_published_ones_stay_done(engine: Engine) -> None:
    relay = OutboxRelayStore(engine)
    assert relay.oldest_waiting() is None
    ids = _fill(engine, 5)
    assert relay.backlog() == 5
    oldest = relay.oldest_waiting()
    assert oldest is not None
    assert oldest.tzinfo is not None  # aware, on both databases
    first = relay.claim(limit=3)
    assert [p.event_id for p in first] == ids[:3]
    assert [p.seq for p in first] == sorted(p.seq for p in first)
    assert first[0].routing_key == "odoo.fleet.reconciled.v1"
    assert first[0].exchange == "instance.events"
    relay.mark_published([p.event_id for p in first])
    assert relay.backlog() == 2
    newer = relay.oldest_waiting()
    assert newer is not None
    assert newer >= oldest
    assert [p.event_id for p in relay.claim()] == ids[3:]
    assert relay.claim() == []  # the rest is claimed by this relay until its lease ends


def test_concurrent_relays_never_claim_the_same_event(engine: Engine) -> None:
    ids = _fill(engine, 300)
    relays = 6
    claimed: list[list[str]] = [[] for _ in range(relays)]

    def drain(slot: int) -> None:
        relay = OutboxRelayStore(engine, relay_id=f"relay-{slot}")
        while batch := relay.claim(limit=7):
            claimed[slot].extend(p.event_id for p in batch)
            time.sleep(0.002)  # publishing; widens the window in which relays overlap
            relay.mark_published([p.event_id for p in batch])

    threads = [threading.Thread(target=drain, args=(slot,)) for slot in range(relays)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [event_id for batch in claimed for event_id in batch]
    assert sorted(everything) == sorted(ids)
    assert len(everything) == len(set(everything))
    assert OutboxRelayStore(engine).backlog() == 0


def test_a_dead_relays_claims_expire_and_released_claims_return_at_once(engine: Engine) -> None:
    ids = _fill(engine, 3)
    dead = OutboxRelayStore(engine, relay_id="dead", lease_seconds=0.3)
    assert len(dead.claim()) == 3
    other = OutboxRelayStore(engine, relay_id="other")
    assert other.claim() == []
    time.sleep(0.4)
    retaken = other.claim()
    assert [p.event_id for p in retaken] == ids
    other.release([p.event_id for p in retaken])
    assert [p.event_id for p in OutboxRelayStore(engine).claim()] == ids
