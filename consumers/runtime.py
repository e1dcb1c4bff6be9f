"""The consumer's main loop: one I/O thread owns the connection, handlers run in worker threads.

The I/O thread runs pika's SelectConnection (consumers/link.py) and is the only one to call the
channel; workers hand their decisions back with `call_soon_threadsafe`, so heartbeats go on
during long handlers and nothing waits for the broker per message: retries and dead letters are
confirmed asynchronously (consumers/settling.py: the delivery is acknowledged once its
re-publication is confirmed; if the connection dies first nothing is acknowledged and the
broker delivers it again), and acknowledgements go out as `multiple` acks over the longest
settled prefix of delivery tags.
Deliveries wait in their queue's ready list until one of its workers is free; a free worker
takes up to `batch_size` of them and decides them together (consumers/batch.py: the store's
transactions are shared by the batch), and each decision is then carried out per delivery. The
events a batch records are written claimed by the outbox relay (consumers/prompt_relay.py) and
handed to it, which publishes them at once. Each work queue has its
own worker pool, so long commands never hold up quick ones.

Connection or channel lost, or consuming cancelled by the broker: reconnect with backoff and
resume (unacknowledged work comes back from the broker and is answered from the inbox or
resumed from its operation). SIGTERM/SIGINT: stop taking work, let in-flight work finish within
the grace period, hand back the rest, flush the outbox, exit 0.

With a parking lot (consumers/parking.py), a delivery whose handler waits (`Park`) stays
unacknowledged without a thread until the lot resumes it into its pool again; at shutdown or a
lost connection parked deliveries are handed back like any unfinished one.
"""

import logging
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType

import pika.exceptions
from pika.spec import Basic, BasicProperties

from consumers.ackqueue import AckCounts, Settlement
from consumers.batch import Handover
from consumers.connection import BrokerUnavailableError, connection_parameters
from consumers.escapes import Escapes
from consumers.health import Health
from consumers.link import Link
from consumers.parking import ParkingLot
from consumers.processing import Decision, Delivery, Park, Processor
from consumers.prompt_relay import PromptRelay
from consumers.relay import OutboxRelay
from consumers.settings import AmqpSettings, ConsumerSettings
from consumers.settling import Settler, delivery_of
from consumers.topology import WorkQueue, declare_on_broker, served_queues
from messages.backoff import RECONNECT
from store.outbox import Claim
from telemetry.metrics import METRICS

log = logging.getLogger(__name__)

HEALTHY_AFTER_SECONDS = 10.0
"""Consuming this long counts as a good connection: the reconnect backoff starts over."""

TICK_SECONDS = 0.1
"""How often the I/O thread beats the health check and looks whether to stop."""


@dataclass
class _Drain:
    """Where a shutdown has got to (SIGTERM: finish, hand back, wait, flush the outbox, close)."""

    deadline: float
    phase: str = "finishing"
    running: list[Future[None]] = field(default_factory=list)
    budget_end: float = 0.0
    handed_back: int = 0


@dataclass
class _Session:
    """What belongs to one connection: its link, pools and unsettled deliveries."""

    link: Link
    pools: dict[str, ThreadPoolExecutor]
    in_flight: dict[int, Future[None]] = field(default_factory=dict)
    """Deliveries a worker decides about or that wait for one (`ready`)."""
    ready: dict[str, deque[tuple[int, Delivery]]] = field(default_factory=dict)
    """Per queue, deliveries waiting for a free worker, in arrival order."""
    working: dict[str, int] = field(default_factory=dict)
    """Per queue, workers deciding a batch."""
    publishing: set[int] = field(default_factory=set)
    """Deliveries whose retry or dead letter waits for the broker's confirm before the ack."""
    parked: set[int] = field(default_factory=set)
    """Deliveries whose handler waits in the parking lot, unacknowledged, without a thread."""
    abandoned: set[int] = field(default_factory=set)
    """Deliveries whose worker died without a decision (a BaseException): unacknowledged until
    the shutdown hands them back, as a killed process would leave them."""
    drain: _Drain | None = None


class ConsumerRuntime:
    """Consumes the work queues until asked to stop."""

    def __init__(
        self,
        amqp: AmqpSettings,
        settings: ConsumerSettings,
        processor: Processor,
        relay: OutboxRelay,
        health: Health,
        parking: ParkingLot | None = None,
    ) -> None:
        self.amqp = amqp
        self.parking = parking
        self.settings = settings
        self.processor = processor
        self.relay = relay
        self.health = health
        self.stopping = threading.Event()
        self._queues = {queue.name: queue for queue in served_queues(settings)}
        self._rng = random.Random()  # noqa: S311 - jitter
        self._outbox = PromptRelay(relay, settings.relay_interval_seconds)
        processor.publish_through(
            Handover(
                Claim(self._outbox.holder, self._outbox.lease_seconds),
                self._outbox.publish,
                self._outbox.kick,
            )
        )
        self._settler = Settler(settings)
        self._escapes = Escapes(settings, processor)
        self.connections = 0
        """How many times the runtime connected (1 unless the broker dropped it)."""
        self.acks = AckCounts()
        """Deliveries settled and the ack/nack frames that carried them."""
        self.link: Link | None = None
        """The current connection (None between connections)."""

    # -- main loop -----------------------------------------------------------------------

    def run(self, on_ready: Callable[[], None] = lambda: None) -> str:
        """Serve until SIGTERM or SIGINT; return the signal's name."""
        received: list[str] = []

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            received.append(signal.Signals(signum).name)
            self.stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.serve(on_ready)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return received[0] if received else "stop"

    def serve(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Connect, consume, reconnect after losses, until `stopping` is set."""
        METRICS.watch_outbox(self.relay)
        self._outbox.start()
        if self.parking is not None:  # its timer resumes waits nothing else ends, at `until`
            threading.Thread(
                target=self.parking.run, args=(self.stopping,), name="parking", daemon=True
            ).start()
        try:
            self._serve(on_ready)
        finally:
            self._outbox.stop()
            METRICS.unwatch_outbox(self.relay)

    def _serve(self, on_ready: Callable[[], None]) -> None:
        failures = 0  # connections in a row that did not last: the backoff's attempt
        while not self.stopping.is_set():
            self.health.beat()  # waiting for the broker is not being stuck
            started = time.monotonic()
            try:
                # The topology on a short blocking connection: declaring is a conversation of
                # its own, done once per connection; consuming needs none of it.
                declare_on_broker(self.amqp, self.settings)
            except BrokerUnavailableError as error:
                log.warning("broker unavailable; retrying", extra={"error": str(error)})
            except pika.exceptions.AMQPError as error:
                log.warning(
                    "connection lost; reconnecting",
                    extra={"error": f"{type(error).__name__}: {error}"},
                )
            else:
                self._connect(on_ready)
            if time.monotonic() - started > HEALTHY_AFTER_SECONDS:
                failures = 0  # it worked for a while: start the backoff over
            if not self.stopping.is_set():
                self.stopping.wait(RECONNECT.delay(failures, self._rng))
                failures += 1

    def _connect(self, on_ready: Callable[[], None]) -> None:
        """One connection, served on this thread until it ends."""
        pools = {
            name: ThreadPoolExecutor(self.settings.workers, thread_name_prefix=f"handler-{name}")
            for name in self._queues
        }
        session: _Session

        def consuming() -> None:
            self.connections += 1
            self._outbox.attach(session.link)
            self.health.set_ready(True)
            on_ready()

        link = Link(
            connection_parameters(self.amqp),
            queues=list(self._queues),
            prefetch=self.settings.prefetch,
            on_message=lambda queue, method, properties, body: self._on_message(
                session, self._queues[queue], method, properties, body
            ),
            on_consuming=consuming,
            on_tick=lambda: self._tick(session),
            tick_seconds=TICK_SECONDS,
            counts=self.acks,
        )
        session = _Session(
            link,
            pools,
            ready={name: deque() for name in self._queues},
            working=dict.fromkeys(self._queues, 0),
        )
        self.link = link
        try:
            link.run()
        finally:
            self.link = None
            self.health.set_ready(False)
            self._outbox.detach(link)
            if self.parking is not None:
                self.parking.cancel_all()  # their channel is gone: the broker has them back
            for pool in pools.values():
                pool.shutdown(wait=False, cancel_futures=True)
        if link.lost is not None and not self.stopping.is_set():
            error = link.lost
            reason = (
                f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
            )
            log.warning("connection lost; reconnecting", extra={"error": reason})

    def _tick(self, session: _Session) -> None:
        """Every TICK_SECONDS on the I/O thread: the health beat, and the shutdown's progress."""
        self.health.beat()
        if session.drain is None and self.stopping.is_set():
            self.health.set_ready(False)
            session.link.cancel_consuming()
            session.drain = _Drain(time.monotonic() + self.settings.shutdown_grace_seconds)
            self._hand_back_parked(session)
        if session.drain is not None:
            self._drain(session, session.drain)

    def _hand_back_parked(self, session: _Session) -> None:
        """Parked deliveries are not resumed during a shutdown: the broker gets them back now."""
        if self.parking is not None:
            self.parking.cancel_all()
        for tag in sorted(session.parked):
            session.in_flight.pop(tag, None)
            session.link.settle(tag, Settlement.REQUEUE)
        session.parked.clear()

    def _drain(self, session: _Session, drain: _Drain) -> None:
        """Stop taking work, finish or hand back what is in flight, flush the outbox."""
        now = time.monotonic()
        if drain.phase == "finishing":
            if not session.in_flight and not session.publishing:
                drain.phase = "outbox"
            elif now >= drain.deadline:
                # Not finished in time: the broker gets it back for whoever takes it next.
                unsettled = set(session.in_flight) | session.publishing
                for tag in sorted(unsettled):
                    session.link.settle(tag, Settlement.REQUEUE)
                drain.handed_back = len(unsettled)
                drain.running = [f for f in session.in_flight.values() if f.running()]
                session.in_flight.clear()
                for ready in session.ready.values():
                    ready.clear()
                session.publishing.clear()
                for pool in session.pools.values():
                    pool.shutdown(wait=False, cancel_futures=True)
                # A handler still running may yet record an outcome: wait a bounded time, so
                # its event leaves with this process rather than waiting for another replica.
                drain.budget_end = now + self.settings.handler_budget_seconds
                drain.phase = "running"
        if drain.phase == "running" and (
            all(future.done() for future in drain.running) or now >= drain.budget_end
        ):
            drain.phase = "outbox"
        if drain.phase == "outbox":
            drain.phase = "closing"
            link = session.link
            for tag in sorted(session.abandoned):
                link.settle(tag, Settlement.REQUEUE)
            drain.handed_back += len(session.abandoned)
            session.abandoned.clear()

            def flushed() -> None:
                log.info("drained", extra={"handed_back": drain.handed_back})
                link.call_soon_threadsafe(link.close)

            self._outbox.flush(flushed)

    # -- deliveries ----------------------------------------------------------------------

    def _on_message(
        self,
        session: _Session,
        queue: WorkQueue,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        delivery = delivery_of(properties, body, queue, method)
        self._ready(session, queue, method.delivery_tag, delivery)

    def _ready(self, session: _Session, queue: WorkQueue, tag: int, delivery: Delivery) -> None:
        """On the I/O thread: the delivery waits for a worker of its queue."""
        session.in_flight[tag] = Future()  # not running: nothing works on it yet
        session.ready[queue.name].append((tag, delivery))
        self._dispatch(session, queue)

    def _dispatch(self, session: _Session, queue: WorkQueue) -> None:
        """On the I/O thread: give each free worker a batch of what is ready.

        What is ready is shared among the free workers, up to `batch_size` each: a few
        deliveries run side by side as before, a backlog is decided in batches.
        """
        ready = session.ready[queue.name]
        workers = self.settings.workers
        while ready and session.working[queue.name] < workers:
            if session.drain is not None and session.drain.phase != "finishing":
                return  # handed back: the pools are shut
            free = workers - session.working[queue.name]
            size = min(self.settings.batch_size, -(-len(ready) // free))
            batch = [ready.popleft() for _ in range(size)]
            session.working[queue.name] += 1
            future = session.pools[queue.name].submit(self._work, session, queue, batch)
            for tag, _ in batch:
                session.in_flight[tag] = future

    def _work(self, session: _Session, queue: WorkQueue, batch: list[tuple[int, Delivery]]) -> None:
        started = time.monotonic()
        deliveries = [delivery for _, delivery in batch]
        try:
            decisions = self.processor.process_batch(deliveries)
        except Exception as error:  # noqa: BLE001 - whatever escapes the decision is counted
            decisions = self._escapes.decide_alone(deliveries, error)
        except BaseException:
            session.link.call_soon_threadsafe(lambda: self._abandon(session, queue, batch))
            raise
        took = time.monotonic() - started
        if took > self.settings.handler_budget_seconds:
            # The messages sat unacknowledged past the budget: a handler should have returned
            # Continue. Reported, since only the handler can fix it.
            log.warning(
                "handler exceeded its budget",
                extra={
                    "message_id": deliveries[0].properties.message_id,
                    "batch": len(deliveries),
                    "seconds": round(took, 1),
                    "budget_seconds": self.settings.handler_budget_seconds,
                },
            )

        def settle() -> None:  # on the I/O thread
            for (tag, delivery), decision in zip(batch, decisions, strict=True):
                self._settle(session, queue, tag, delivery, decision)
            session.working[queue.name] -= 1
            self._dispatch(session, queue)

        if not session.link.call_soon_threadsafe(settle):
            # The connection is gone; the broker redelivers, and the inbox answers.
            log.info("connection closed before settling", extra={"decisions": len(decisions)})

    def _abandon(
        self, session: _Session, queue: WorkQueue, batch: list[tuple[int, Delivery]]
    ) -> None:
        """On the I/O thread: a worker died without deciding; its deliveries wait unsettled
        for the shutdown (or the connection's end) and the worker's place is free again."""
        for tag, _ in batch:
            if session.in_flight.pop(tag, None) is not None:
                session.abandoned.add(tag)
        session.working[queue.name] -= 1
        self._dispatch(session, queue)

    def _settle(
        self,
        session: _Session,
        queue: WorkQueue,
        tag: int,
        delivery: Delivery,
        decision: Decision,
    ) -> None:
        """On the I/O thread: carry out a decision, unless its delivery is no longer ours."""
        if isinstance(decision, Park):
            if self._park(session, queue, tag, delivery, decision):
                return
            decision = decision.otherwise  # the lot is full or closed: a continuation, as before
        if session.in_flight.pop(tag, None) is None or not session.link.usable:
            return  # handed back at shutdown, or the channel went away: redelivery follows
        self._settler.carry_out(session.link, session.publishing, queue, tag, delivery, decision)

    def _park(
        self, session: _Session, queue: WorkQueue, tag: int, delivery: Delivery, park: Park
    ) -> bool:
        """Leave the delivery unacknowledged in the lot; False if it cannot wait there."""
        if (
            self.parking is None
            or tag not in session.in_flight
            or session.drain is not None
            or not session.link.usable
        ):
            return False
        again = park.resumed(delivery)

        def submit() -> None:  # on the I/O thread
            if tag in session.parked and session.drain is None:
                session.parked.discard(tag)
                self._ready(session, queue, tag, again)

        def resume() -> None:  # on the informer's or the timer's thread
            session.link.call_soon_threadsafe(submit)

        if not self.parking.park(tag, park.waiting_for, park.until, resume):
            return False
        session.parked.add(tag)
        return True
