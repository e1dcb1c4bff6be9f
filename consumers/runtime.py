"""The consumer's main loop: one pika connection thread, handlers in worker threads.

Every channel call (ack, publish, nack) happens on the connection thread; workers hand their
decisions back with `add_callback_threadsafe`, so heartbeats go on during long handlers. Each
work queue has its own worker pool, so long commands never hold up quick ones. Connection or
channel lost: reconnect with backoff and resume (unacknowledged work comes back from the broker
and is answered from the inbox or resumed from its operation). SIGTERM/SIGINT: stop taking work,
let in-flight work finish within the grace period, hand back the rest, flush the outbox, exit 0.
With a parking lot (consumers/parking.py), a delivery whose handler waits (`Park`) stays
unacknowledged in `in_flight` without a thread until the lot resumes it into its pool again;
at shutdown or a lost connection parked deliveries are handed back like any unfinished one.
"""

import contextlib
import functools
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from consumers.connection import BrokerUnavailableError, open_connection
from consumers.headers import MAX_REASON_CHARS, came_back, dead_letter_headers, retry_headers
from consumers.health import Health
from consumers.parking import ParkingLot
from consumers.processing import DeadLetter, Decision, Delivery, Park, Processor, Retry
from consumers.relay import OutboxRelay
from consumers.settings import AmqpSettings, ConsumerSettings
from consumers.topology import WorkQueue, declare, served_queues
from messages.amqp import AmqpProperties
from messages.backoff import RECONNECT
from messages.errors import RetryableError
from telemetry.metrics import METRICS, UNREADABLE

log = logging.getLogger(__name__)

HEALTHY_AFTER_SECONDS = 10.0
"""Consuming this long counts as a good connection: the reconnect backoff starts over."""


class ConsumingStoppedError(Exception):
    """The broker cancelled a consumer or closed the channel: reconnect."""


def _delivery(
    properties: BasicProperties, body: bytes, queue: WorkQueue, method: Basic.Deliver
) -> Delivery:
    headers = dict(properties.headers or {})
    exchange, routing_key = str(method.exchange or ""), str(method.routing_key or "")
    return Delivery(
        queue=queue.name,
        exchange=exchange,
        routing_key=routing_key,
        redelivered=bool(method.redelivered),
        came_back=came_back(headers, exchange, routing_key, queue.name, queue.delay_queues),
        body=body,
        properties=AmqpProperties(
            content_type=properties.content_type,
            message_id=properties.message_id,
            delivery_mode=properties.delivery_mode,
            headers=headers,
        ),
    )


@dataclass
class _Session:
    """What belongs to one connection: its channel, pools and unsettled deliveries."""

    connection: pika.BlockingConnection
    channel: BlockingChannel
    pools: dict[str, ThreadPoolExecutor]
    in_flight: dict[int, Future[None]] = field(default_factory=dict)
    cancelled: bool = False


class ConsumerRuntime:
    """Consumes both work queues until asked to stop."""

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
        self.connections = 0
        """How many times the runtime connected (1 unless the broker dropped it)."""

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
        METRICS.watch_outbox(self.relay.backlog)
        try:
            self._serve(on_ready)
        finally:
            METRICS.unwatch_outbox(self.relay.backlog)

    def _serve(self, on_ready: Callable[[], None]) -> None:
        failures = 0  # connections in a row that did not last: the backoff's attempt
        while not self.stopping.is_set():
            self.health.beat()  # waiting for the broker is not being stuck
            started = time.monotonic()
            try:
                connection = open_connection(self.amqp)
            except BrokerUnavailableError as error:
                log.warning("broker unavailable; retrying", extra={"error": str(error)})
            else:
                self.connections += 1
                try:
                    self._consume(connection, on_ready)
                except (pika.exceptions.AMQPError, ConsumingStoppedError) as error:
                    log.warning(
                        "connection lost; reconnecting",
                        extra={"error": f"{type(error).__name__}: {error}"},
                    )
                finally:
                    self.health.set_ready(False)
                    if connection.is_open:
                        with contextlib.suppress(pika.exceptions.AMQPError):
                            connection.close()
            if time.monotonic() - started > HEALTHY_AFTER_SECONDS:
                failures = 0  # it worked for a while: start the backoff over
            if not self.stopping.is_set():
                self.stopping.wait(RECONNECT.delay(failures, self._rng))
                failures += 1

    def _consume(self, connection: pika.BlockingConnection, on_ready: Callable[[], None]) -> None:
        channel = connection.channel()
        channel.confirm_delivery()
        declare(channel, self.settings)
        channel.basic_qos(prefetch_count=self.settings.prefetch)
        pools = {
            name: ThreadPoolExecutor(self.settings.workers, thread_name_prefix=f"handler-{name}")
            for name in self._queues
        }
        session = _Session(connection, channel, pools)

        def on_cancel(_frame: object) -> None:
            session.cancelled = True

        channel.add_on_cancel_callback(on_cancel)
        tags = [
            channel.basic_consume(
                queue.name, on_message_callback=functools.partial(self._on_message, session, queue)
            )
            for queue in self._queues.values()
        ]
        self.health.set_ready(True)
        on_ready()
        try:
            while not self.stopping.is_set():
                connection.process_data_events(time_limit=self.settings.relay_interval_seconds)
                if session.cancelled or not channel.is_open:
                    raise ConsumingStoppedError(
                        "the broker cancelled consuming or closed the channel"
                    )
                self.relay.publish_pending(channel)
                self.health.beat()
            self._drain(session, tags)
        finally:
            if self.parking is not None:
                self.parking.cancel_all()  # their channel is gone: the broker has them back
            for pool in pools.values():
                pool.shutdown(wait=False, cancel_futures=True)

    def _drain(self, session: _Session, tags: list[str]) -> None:
        """Stop taking work, finish or hand back what is in flight, flush the outbox."""
        connection, channel = session.connection, session.channel
        self.health.set_ready(False)
        for tag in tags:
            channel.basic_cancel(tag)
        if self.parking is not None:
            self.parking.cancel_all()  # parked: handed back below, never resumed
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        while session.in_flight and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
            self.health.beat()
            if all(future.done() for future in session.in_flight.values()):
                # Finished work has queued its settling: run it. What is left ended without a
                # decision (a worker killed mid-handler) and is handed back below.
                connection.process_data_events(time_limit=0)
                break
        handed_back = len(session.in_flight)
        for delivery_tag in list(session.in_flight):
            # Not finished in time: the broker gets it back for whoever takes it next.
            channel.basic_nack(delivery_tag, requeue=True)
        running = [future for future in session.in_flight.values() if future.running()]
        session.in_flight.clear()
        for pool in session.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        # A handler still running may yet record an outcome: wait a bounded time, so its event
        # leaves with this process rather than waiting for another replica.
        budget_end = time.monotonic() + self.settings.handler_budget_seconds
        while any(not future.done() for future in running) and time.monotonic() < budget_end:
            connection.process_data_events(time_limit=0.2)
        self.relay.publish_pending(channel, until_empty=True)
        log.info("drained", extra={"handed_back": handed_back})

    # -- deliveries ----------------------------------------------------------------------

    def _on_message(
        self,
        session: _Session,
        queue: WorkQueue,
        channel: BlockingChannel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        delivery = _delivery(properties, body, queue, method)
        tag = method.delivery_tag
        session.in_flight[tag] = session.pools[queue.name].submit(
            self._work, session, queue, tag, delivery
        )

    def _work(self, session: _Session, queue: WorkQueue, tag: int, delivery: Delivery) -> None:
        started = time.monotonic()
        try:
            decision: Decision = self.processor.process(delivery)
        except Exception as error:  # noqa: BLE001 - whatever escapes the decision is counted
            decision = self._escaped(delivery, error)
        took = time.monotonic() - started
        if took > self.settings.handler_budget_seconds:
            # The message sat unacknowledged past the budget: the handler should have returned
            # Continue. Reported, since only the handler can fix it.
            log.warning(
                "handler exceeded its budget",
                extra={
                    "message_id": delivery.properties.message_id,
                    "seconds": round(took, 1),
                    "budget_seconds": self.settings.handler_budget_seconds,
                },
            )
        settle = functools.partial(self._settle, session, queue, tag, delivery, decision)
        try:
            session.connection.add_callback_threadsafe(settle)
        except pika.exceptions.AMQPError:
            # The connection is gone; the broker redelivers, and the inbox answers.
            log.info("connection closed before settling", extra={"decision": repr(decision)})

    def _escaped(self, delivery: Delivery, error: Exception) -> Decision:
        """An exception escaped the decision: retry, counted in the message, then dead-letter.

        A RetryableError here came before the command got its own retry count (the state
        database went away while its inbox row was read, say); anything else is a bug or a
        message nothing foresaw. Neither may cycle for ever.
        """
        counters = delivery.counters()
        if isinstance(error, RetryableError):
            retries = counters.retries + 1
            if retries <= self.settings.max_retries:
                log.warning("processing interrupted; will retry", extra={"error": str(error)})
                return Retry(
                    self.processor.delay(retries - 1),
                    f"processing interrupted: {error}",
                    counters.counted("retries"),
                    "processing",
                )
            code = "processing_interrupted"
        else:
            unexpected = counters.unexpected + 1
            if unexpected < self.settings.max_unexpected_failures:
                log.exception("processing failed; the delivery will be retried")
                return Retry(
                    self.processor.delay(unexpected - 1),
                    f"processing failed: {error!r}",
                    counters.counted("unexpected"),
                    "processing",
                )
            log.exception("processing failed, final; dead-lettering the delivery")
            code = "processing_failed"
        return DeadLetter(code, f"{type(error).__name__}: {error}"[:MAX_REASON_CHARS])

    def _settle(
        self,
        session: _Session,
        queue: WorkQueue,
        tag: int,
        delivery: Delivery,
        decision: Decision,
    ) -> None:
        """Carry out a decision on the connection thread: publish what it needs, then ack."""
        channel = session.channel
        if isinstance(decision, Park):
            if (
                tag in session.in_flight
                and channel.is_open
                and self._park(session, queue, tag, delivery, decision)
            ):
                return
            decision = decision.otherwise
        if session.in_flight.pop(tag, None) is None or not channel.is_open:
            return  # handed back at shutdown, or the channel went away: redelivery follows
        try:
            if isinstance(decision, Retry):
                self._publish_retry(channel, queue, delivery, decision)
            elif isinstance(decision, DeadLetter):
                self._publish_dead_letter(channel, delivery, decision)
            else:
                log.debug("acknowledged", extra={"note": decision.note})
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
            self._reject(channel, tag, delivery, error)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError):
            raise  # the connection or channel is gone: reconnect; the broker redelivers
        except Exception as error:  # noqa: BLE001 - one message's problem, not the connection's
            self._reject(channel, tag, delivery, error)
        else:
            channel.basic_ack(tag)

    def _park(
        self, session: _Session, queue: WorkQueue, tag: int, delivery: Delivery, park: Park
    ) -> bool:
        """Leave the delivery unacknowledged in the lot; False if the lot cannot take it."""
        if self.parking is None:
            return False
        again = park.resumed(delivery)

        def resume() -> None:  # on the informer's or the timer's thread
            def submit() -> None:
                if tag in session.in_flight and not session.cancelled:
                    session.in_flight[tag] = session.pools[queue.name].submit(
                        self._work, session, queue, tag, again
                    )

            session.connection.add_callback_threadsafe(submit)

        return self.parking.park(tag, park.waiting_for, park.until, resume)

    def _reject(
        self, channel: BlockingChannel, tag: int, delivery: Delivery, error: Exception
    ) -> None:
        """The message could not be re-published: the work queue dead-letters it itself."""
        log.error(
            "could not publish for this delivery; handing it to the dead letters",
            extra={
                "message_id": delivery.properties.message_id,
                "error": f"{type(error).__name__}: {error}"[:MAX_REASON_CHARS],
            },
        )
        METRICS.dead_lettered(UNREADABLE, "publish_failed")
        # The work queues dead-letter a rejected message at least once, reason `rejected`.
        channel.basic_nack(tag, requeue=False)

    def _publish_retry(
        self, channel: BlockingChannel, queue: WorkQueue, delivery: Delivery, decision: Retry
    ) -> None:
        tiers = queue.delays_seconds
        tier = next((i for i, base in enumerate(tiers) if base >= decision.delay), len(tiers) - 1)
        # Messages of one delay queue expire within (1 - jitter) x its delay and its delay, so
        # one waiting at the head never holds the others back by more than that spread.
        base = tiers[tier]
        floor = base * (1 - self.settings.retry_jitter)
        expiration = min(base, max(decision.delay, floor))
        channel.basic_publish(
            "",
            queue.delay_queue(tier),
            delivery.body,
            BasicProperties(
                content_type=delivery.properties.content_type,
                message_id=delivery.properties.message_id,
                delivery_mode=2,
                expiration=str(max(0, int(expiration * 1000))),
                headers=retry_headers(decision.counters, delivery.properties.headers),
            ),
            mandatory=True,
        )
        if decision.cause != "not_due":  # a hop of a long delay, not a new attempt
            METRICS.retried(decision.command_type, decision.cause)
        log.info(
            "retry scheduled",
            extra={
                "message_id": delivery.properties.message_id,
                "delay_seconds": round(expiration, 3),
                "reason": decision.reason[:MAX_REASON_CHARS],
            },
        )

    def _publish_dead_letter(
        self, channel: BlockingChannel, delivery: Delivery, decision: DeadLetter
    ) -> None:
        headers = dead_letter_headers(decision.code, decision.reason, delivery.properties.headers)
        channel.basic_publish(
            self.settings.dead_letter_exchange,
            self.settings.dead_letter_queue,
            delivery.body,
            BasicProperties(
                content_type=delivery.properties.content_type,
                message_id=delivery.properties.message_id,
                delivery_mode=2,
                headers=headers,
            ),
            mandatory=True,
        )
        METRICS.dead_lettered(decision.command_type, decision.code)
        log.warning(
            "dead-lettered",
            extra={
                "message_id": delivery.properties.message_id,
                "code": decision.code,
                "reason": decision.reason[:MAX_REASON_CHARS],
            },
        )
