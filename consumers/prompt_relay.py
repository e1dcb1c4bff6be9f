"""The consumer's outbox relay: events go out as soon as the work that recorded them commits.

A worker that has recorded a batch hands its events over (`publish`): they were written claimed
by this relay (`holder`, for `lease_seconds`) in the recording transaction, so they go out
without a claim query. A worker that wrote events unclaimed (a refusal's answer) kicks the relay
to claim them; a timer (`relay_interval_seconds`) turns it as well, for what a crash, an outage
or another process left behind, and takes handed-over events whose publisher died once their
lease has ended. Database work (claim,
mark published, release) runs on this relay's own thread, never on the connection's I/O
thread, which it would stall; only the `basic_publish` calls run there (consumers/link.py).

    publish(recorded) ─┐
    kick / timer -> claim (oldest first) -> I/O thread: publish the batch, in order
        -> confirms come back (any order, many at once) -> this thread: mark the batch
           published in one transaction, release what was nacked or lost

Several claimed batches may be in flight at once (MAX_BATCHES_IN_FLIGHT); their events leave
in claim order on one channel, so the events of one instance keep the order they were recorded
in. An event lost with the connection is released and published again on the next one; an
event the broker refused (nack) stays claimed until its lease ends, then goes again; both under
the same id.
"""

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pika.exceptions
from pika.spec import BasicProperties

from consumers.confirms import OnOutcome, Outcome
from consumers.relay import OutboxRelay, confirmed, event_properties, publish_span, unroutable
from store.outbox import PendingEvent

log = logging.getLogger(__name__)

MAX_BATCHES_IN_FLIGHT = 4
"""Claimed batches published and not yet all answered, at most."""

CLAIM_GAP_SECONDS = 0.01
"""Turns (a claim, a mark) come at most this often: under load a claim takes what several
commands recorded, which costs an event a few milliseconds and saves a transaction per command."""


class Link(Protocol):
    """What the relay needs of a connection (consumers/link.py's Link)."""

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> bool:
        """Have the I/O thread call `callback`; False once the connection is over."""
        ...

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: BasicProperties,
        on_outcome: OnOutcome,
    ) -> None:
        """Publish `mandatory`, on the I/O thread; `on_outcome` learns what became of it."""
        ...


@dataclass(frozen=True)
class _Kick:
    """Something was recorded: claim now."""


@dataclass(frozen=True)
class _Recorded:
    """Events a worker recorded claimed for this relay: publish them, no claim needed."""

    events: list[PendingEvent]


@dataclass(frozen=True)
class _Attach:
    link: Link


@dataclass(frozen=True)
class _Detach:
    link: Link


@dataclass(frozen=True)
class _Answered:
    """Every event of a batch has its outcome."""

    batch: int
    published: list[str]
    released: list[str]


@dataclass(frozen=True)
class _Flush:
    done: Callable[[], None]


@dataclass(frozen=True)
class _Stop:
    pass


_Message = _Kick | _Recorded | _Attach | _Detach | _Answered | _Flush | _Stop


@dataclass
class _Batch:
    """A claimed batch on its way through the I/O thread."""

    number: int
    link: Link
    events: list[PendingEvent]
    published: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    held: int = 0
    """Events neither published nor released: they stay claimed until their lease ends."""
    reported: bool = False

    def told(self) -> int:
        return len(self.published) + len(self.released) + self.held


class PromptRelay:
    """Publishes the outbox through the current link, promptly; one thread per consumer."""

    def __init__(self, relay: OutboxRelay, interval_seconds: float) -> None:
        self.relay = relay
        self.interval_seconds = interval_seconds
        self._inbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._kicked = False
        self._thread: threading.Thread | None = None
        # The relay thread's own state:
        self._link: Link | None = None
        self._batches: dict[int, _Batch] = {}
        self._numbered = 0
        self._flushes: list[Callable[[], None]] = []
        self._drained = False
        """The last claim found nothing more (reset when events are released)."""
        self._claimed_at = 0.0
        """time.monotonic() of the last claim."""

    # -- any thread ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the relay thread."""
        self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the relay thread (after `detach`: nothing is in flight then)."""
        self._inbox.put(_Stop())
        if self._thread is not None:
            self._thread.join(timeout=30)

    def kick(self) -> None:
        """Something was recorded: publish it now rather than on the next timer turn."""
        if not self._kicked:
            self._kicked = True
            self._inbox.put(_Kick())

    def publish(self, events: list[PendingEvent]) -> None:
        """Publish events just recorded claimed by this relay (`holder`), without a claim; a
        relay's poll takes them only once their lease has ended unpublished."""
        if events:
            self._inbox.put(_Recorded(events))

    @property
    def holder(self) -> str:
        """Who the events handed to `publish` are written claimed by."""
        return self.relay.store.relay_id

    @property
    def lease_seconds(self) -> float:
        """How long those claims last."""
        return self.relay.store.lease.total_seconds()

    def attach(self, link: Link) -> None:
        """Publish through `link` (its channel is in confirm mode)."""
        self._inbox.put(_Attach(link))

    def detach(self, link: Link) -> None:
        """`link` is over (its unanswered publishes were told LOST): release what it held."""
        self._inbox.put(_Detach(link))

    def flush(self, done: Callable[[], None]) -> None:
        """Publish until nothing claimable is left and everything is answered, then call `done`
        (on the relay thread); at once if no link is attached."""
        self._inbox.put(_Flush(done))

    # -- the relay thread --------------------------------------------------------------------

    def _run(self) -> None:
        turned = 0.0
        while True:
            try:
                messages = [self._inbox.get(timeout=self.interval_seconds)]
            except queue.Empty:
                messages = []
            # Busy: gather what arrives until CLAIM_GAP_SECONDS after the last turn, so one
            # claim serves many commands. Idle: the first kick is served at once.
            while (wait := turned + CLAIM_GAP_SECONDS - time.monotonic()) > 0:
                try:
                    messages.append(self._inbox.get(timeout=wait))
                except queue.Empty:
                    break
            while True:  # whatever else arrived meanwhile, handled in one turn
                try:
                    messages.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            turned = time.monotonic()
            if not self._turn(messages):
                return

    def _turn(self, messages: list[_Message]) -> bool:
        published: list[str] = []
        released: list[str] = []
        recorded: list[PendingEvent] = []
        # A claim is a transaction: taken when something may wait unclaimed (a kick, a new
        # link, released events, more than the last claim took, a flush) and every interval,
        # for leases that ended; events handed over (`publish`) need none.
        claim = time.monotonic() - self._claimed_at >= self.interval_seconds
        for message in messages:
            if isinstance(message, _Stop):
                return False
            if isinstance(message, _Kick):
                self._kicked = False
                claim = True
            elif isinstance(message, _Recorded):
                recorded += message.events
            elif isinstance(message, _Attach):
                self._link = message.link
                claim = True
            elif isinstance(message, _Detach):
                self._detached(message.link, published, released)
            elif isinstance(message, _Answered):
                if self._batches.pop(message.batch, None) is not None:
                    published += message.published
                    released += message.released
                claim = claim or not self._drained
            else:
                self._flushes.append(message.done)
                self._drained = False
                claim = True
        if recorded:
            released += self._send(sorted(recorded, key=lambda event: event.seq))
        if released:
            self._drained = False
            claim = True
        if published or released:
            self.relay.complete(published, released)
        if claim:
            self._claim()
        if self._flushes and (self._link is None or (self._drained and not self._batches)):
            flushes, self._flushes = self._flushes, []
            for done in flushes:
                done()
        return True

    def _detached(self, link: Link, published: list[str], released: list[str]) -> None:
        if self._link is link:
            self._link = None
        for number, batch in list(self._batches.items()):
            if batch.link is link:
                # Its publishing never ran, or stopped half-way: what the broker confirmed is
                # published, the rest goes again on the next link.
                confirmed_ids = set(batch.published)
                published += batch.published
                released += [e.event_id for e in batch.events if e.event_id not in confirmed_ids]
                del self._batches[number]

    def _send(self, events: list[PendingEvent]) -> list[str]:
        """Have the link publish a batch; the ids to release if there is no link to take it."""
        link = self._link
        if link is None:
            return [e.event_id for e in events]
        self._numbered += 1
        batch = _Batch(self._numbered, link, events)
        self._batches[batch.number] = batch
        if not link.call_soon_threadsafe(functools.partial(self._publish, batch)):
            del self._batches[batch.number]
            return [e.event_id for e in events]
        return []

    def _claim(self) -> None:
        while self._link is not None and len(self._batches) < MAX_BATCHES_IN_FLIGHT:
            self._claimed_at = time.monotonic()
            events = self.relay.claim()
            if len(events) < self.relay.batch:
                self._drained = True
            if not events:
                return
            unsent = self._send(events)
            if unsent:
                self.relay.complete([], unsent)
                return
            if len(events) < self.relay.batch:
                return

    # -- the I/O thread --------------------------------------------------------------------

    def _publish(self, batch: _Batch) -> None:
        """Publish a batch in order; its outcomes come back through the confirms."""
        for index, pending in enumerate(batch.events):
            try:
                with publish_span(pending):
                    batch.link.publish(
                        pending.exchange,
                        pending.routing_key,
                        pending.body,
                        event_properties(pending),
                        functools.partial(self._outcome, batch, pending),
                    )
            except (pika.exceptions.AMQPChannelError, pika.exceptions.AMQPConnectionError) as error:
                # The channel is gone: this event and the rest go again on the next link.
                log.info("outbox publishing interrupted", extra={"error": repr(error)})
                batch.released += [e.event_id for e in batch.events[index:]]
                break
            except Exception:  # one event pika cannot encode must not stop the others
                log.exception("event could not be published", extra={"event_id": pending.event_id})
                batch.held += 1
        self._check(batch)

    def _outcome(self, batch: _Batch, pending: PendingEvent, outcome: Outcome) -> None:
        if outcome is Outcome.CONFIRMED:
            confirmed(pending)
            batch.published.append(pending.event_id)
        elif outcome is Outcome.UNROUTABLE:
            unroutable(pending)
            confirmed(pending)
            batch.published.append(pending.event_id)
        elif outcome is Outcome.NACKED:
            # Kept claimed until its lease ends: a broker that keeps refusing is not asked again
            # at once, in a loop.
            log.warning(
                "event refused by the broker; it will be published again",
                extra={"event_id": pending.event_id, "type": pending.routing_key},
            )
            batch.held += 1
        else:
            batch.released.append(pending.event_id)
        self._check(batch)

    def _check(self, batch: _Batch) -> None:
        if batch.told() == len(batch.events) and not batch.reported:
            batch.reported = True
            self._inbox.put(_Answered(batch.number, batch.published, batch.released))
