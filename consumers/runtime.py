"""The consumer's main loop: one pika connection thread, handlers in worker threads.

Every channel call (ack, publish, nack) happens on the connection thread; workers hand their
decisions back with `add_callback_threadsafe`, so heartbeats go on during long handlers.
Connection loss: reconnect with backoff and resume (unacknowledged work comes back from the
broker and is answered from the inbox or resumed from its operation). SIGTERM/SIGINT: stop
taking work, let in-flight work finish within the grace period, hand back the rest, flush the
outbox, exit 0.
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
from types import FrameType

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from consumers.connection import BrokerUnavailableError, open_connection
from consumers.health import Health
from consumers.processing import (
    DeadLetter,
    Decision,
    Delivery,
    Processor,
    Retry,
    headers_for_retry,
)
from consumers.relay import OutboxRelay
from consumers.settings import AmqpSettings, ConsumerSettings
from consumers.topology import WorkQueue, declare, work_queues
from messages.amqp import AmqpProperties

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 500


def _delivery(properties: BasicProperties, body: bytes) -> Delivery:
    return Delivery(
        body=body,
        properties=AmqpProperties(
            content_type=properties.content_type,
            message_id=properties.message_id,
            delivery_mode=properties.delivery_mode,
            headers=dict(properties.headers or {}),
        ),
    )


class ConsumerRuntime:
    """Consumes both work queues until asked to stop."""

    def __init__(
        self,
        amqp: AmqpSettings,
        settings: ConsumerSettings,
        processor: Processor,
        relay: OutboxRelay,
        health: Health,
    ) -> None:
        self.amqp = amqp
        self.settings = settings
        self.processor = processor
        self.relay = relay
        self.health = health
        self.stopping = threading.Event()
        self._queues = {queue.name: queue for queue in work_queues(settings)}
        self._in_flight: dict[int, Future[None]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self.connections = 0
        """How many times the runtime connected (1 unless the broker dropped it)."""
        self._rng = random.Random()  # noqa: S311 - jitter

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
        delay = 0.5
        while not self.stopping.is_set():
            try:
                connection = open_connection(self.amqp)
            except BrokerUnavailableError as error:
                log.warning("broker unavailable; retrying", extra={"error": str(error)})
            else:
                self.connections += 1
                delay = 0.5  # a good connection resets the backoff
                try:
                    self._consume(connection, on_ready)
                except pika.exceptions.AMQPError as error:
                    log.warning(
                        "connection lost; reconnecting",
                        extra={"error": f"{type(error).__name__}: {error}"},
                    )
                finally:
                    self.health.set_ready(False)
                    if connection.is_open:
                        with contextlib.suppress(pika.exceptions.AMQPError):
                            connection.close()
            if not self.stopping.is_set():
                self.stopping.wait(delay * (1 + self._rng.random() * 0.2))
                delay = min(delay * 2, 30.0)

    def _consume(self, connection: pika.BlockingConnection, on_ready: Callable[[], None]) -> None:
        channel = connection.channel()
        channel.confirm_delivery()
        declare(channel, self.settings)
        channel.basic_qos(prefetch_count=self.settings.prefetch)
        tags = [
            channel.basic_consume(
                queue.name,
                on_message_callback=functools.partial(self._on_message, connection, queue),
            )
            for queue in self._queues.values()
        ]
        self.health.set_ready(True)
        on_ready()
        with ThreadPoolExecutor(self.settings.workers, thread_name_prefix="handler") as pool:
            self._pool = pool
            while not self.stopping.is_set():
                connection.process_data_events(time_limit=self.settings.relay_interval_seconds)
                self.relay.publish_pending(channel)
                self.health.beat()
            self._drain(connection, channel, tags)

    def _drain(
        self, connection: pika.BlockingConnection, channel: BlockingChannel, tags: list[str]
    ) -> None:
        """Stop taking work, finish or hand back what is in flight, flush the outbox."""
        self.health.set_ready(False)
        for tag in tags:
            channel.basic_cancel(tag)
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        while self._in_flight and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
            self.health.beat()
        for delivery_tag, future in list(self._in_flight.items()):
            # Not finished in time: the broker gets it back (redelivered, then resumed or
            # answered from the inbox by whoever takes it).
            future.cancel()
            channel.basic_nack(delivery_tag, requeue=True)
            self._in_flight.pop(delivery_tag, None)
        self.relay.publish_pending(channel, until_empty=True)
        log.info("drained", extra={"handed_back": len(self._in_flight)})

    # -- deliveries ----------------------------------------------------------------------

    def _on_message(
        self,
        connection: pika.BlockingConnection,
        queue: WorkQueue,
        channel: BlockingChannel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        delivery = _delivery(properties, body)
        tag = method.delivery_tag
        if self._pool is None:
            raise RuntimeError("a delivery arrived outside _consume")
        self._in_flight[tag] = self._pool.submit(
            self._work, connection, channel, queue, tag, delivery
        )

    def _work(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        queue: WorkQueue,
        tag: int,
        delivery: Delivery,
    ) -> None:
        started = time.monotonic()
        decision = self.processor.process(delivery)
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
        settle = functools.partial(self._settle, channel, queue, tag, delivery, decision)
        try:
            connection.add_callback_threadsafe(settle)
        except pika.exceptions.AMQPError:
            # The connection is gone; the broker redelivers, and the inbox answers.
            log.info("connection closed before settling", extra={"decision": repr(decision)})

    def _settle(
        self,
        channel: BlockingChannel,
        queue: WorkQueue,
        tag: int,
        delivery: Delivery,
        decision: Decision,
    ) -> None:
        """Carry out a decision on the connection thread: publish what it needs, then ack."""
        if self._in_flight.pop(tag, None) is None or not channel.is_open:
            return  # handed back at shutdown, or the channel went away: redelivery follows
        if isinstance(decision, Retry):
            self._publish_retry(channel, queue, delivery, decision)
        elif isinstance(decision, DeadLetter):
            self._publish_dead_letter(channel, delivery, decision)
        else:
            log.debug("acknowledged", extra={"note": decision.note})
        channel.basic_ack(tag)

    def _publish_retry(
        self, channel: BlockingChannel, queue: WorkQueue, delivery: Delivery, decision: Retry
    ) -> None:
        tiers = queue.delays_seconds
        tier = next((i for i, base in enumerate(tiers) if base >= decision.delay), len(tiers) - 1)
        channel.basic_publish(
            "",
            queue.delay_queue(tier),
            delivery.body,
            BasicProperties(
                content_type=delivery.properties.content_type,
                message_id=delivery.properties.message_id,
                delivery_mode=2,
                expiration=str(max(0, int(decision.delay * 1000))),
                headers=headers_for_retry(decision, delivery.properties.headers),
            ),
            mandatory=True,
        )
        log.info(
            "retry scheduled",
            extra={
                "message_id": delivery.properties.message_id,
                "delay_seconds": round(decision.delay, 3),
                "reason": decision.reason[:MAX_REASON_CHARS],
            },
        )

    def _publish_dead_letter(
        self, channel: BlockingChannel, delivery: Delivery, decision: DeadLetter
    ) -> None:
        headers = dict(delivery.properties.headers)
        headers["x-instance-service-rejection-code"] = decision.code
        headers["x-instance-service-rejection-reason"] = decision.reason[:MAX_REASON_CHARS]
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
        log.warning(
            "dead-lettered",
            extra={
                "message_id": delivery.properties.message_id,
                "code": decision.code,
                "reason": decision.reason[:MAX_REASON_CHARS],
            },
        )
