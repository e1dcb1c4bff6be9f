"""Carrying out a decision on the I/O thread: acknowledge, or re-publish (a retry to a delay
queue, a refusal to the dead letters) and acknowledge once the broker has confirmed it.

A re-publication the broker nacks or cannot route rejects the delivery instead (nack without
requeue), so the work queue dead-letters it itself with reason `rejected`; if the connection
goes before the broker answers, nothing is acknowledged and the broker delivers it again (the
inbox answers the repeat). Also here: turning pika's delivery into our `Delivery`.
"""

import logging
from collections.abc import Callable

import pika.exceptions
from pika.spec import Basic, BasicProperties

from consumers.ackqueue import Settlement
from consumers.confirms import Outcome
from consumers.delivery import Ack, DeadLetter, Delivery, Retry
from consumers.headers import MAX_REASON_CHARS, came_back, dead_letter_headers, retry_headers
from consumers.link import Link
from consumers.settings import ConsumerSettings
from consumers.topology import WorkQueue
from messages.amqp import AmqpProperties
from telemetry.metrics import METRICS, UNREADABLE

log = logging.getLogger(__name__)

Published = Callable[[Outcome, Callable[[], None]], None]
"""Told the outcome of a re-publication, with what to say (log, count) if it was confirmed."""


def delivery_of(
    properties: BasicProperties, body: bytes, queue: WorkQueue, method: Basic.Deliver
) -> Delivery:
    """What the broker handed over, as our `Delivery`."""
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


class Settler:
    """Carries out decisions on the I/O thread."""

    def __init__(self, settings: ConsumerSettings) -> None:
        self.settings = settings

    def carry_out(
        self,
        link: Link,
        publishing: set[int],
        queue: WorkQueue,
        tag: int,
        delivery: Delivery,
        decision: Ack | Retry | DeadLetter,
    ) -> None:
        """Ack, or publish what the decision needs and ack once the broker confirms it.

        `publishing` holds the tags waiting for their confirm; a tag taken out of it meanwhile
        (handed back at shutdown) is left alone when the confirm comes.
        """
        if not isinstance(decision, Retry | DeadLetter):
            log.debug("acknowledged", extra={"note": decision.note})
            link.settle(tag, Settlement.ACK)
            return

        def published(outcome: Outcome, said: Callable[[], None]) -> None:
            if tag not in publishing:
                return  # handed back meanwhile
            publishing.discard(tag)
            if outcome is Outcome.CONFIRMED:
                said()
                link.settle(tag, Settlement.ACK)
            elif outcome is Outcome.LOST:
                pass  # nothing acknowledged: the broker delivers it again
            else:
                self._reject(link, tag, delivery, f"the broker answered {outcome.value}")

        publishing.add(tag)
        try:
            if isinstance(decision, Retry):
                self._publish_retry(link, queue, delivery, decision, published)
            else:
                self._publish_dead_letter(link, delivery, decision, published)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError):
            # The connection or channel is gone: the broker redelivers; reconnecting follows.
            publishing.discard(tag)
        except Exception as error:  # noqa: BLE001 - one message's problem, not the connection's
            publishing.discard(tag)
            self._reject(link, tag, delivery, f"{type(error).__name__}: {error}")

    def _reject(self, link: Link, tag: int, delivery: Delivery, error: str) -> None:
        """The message could not be re-published: the work queue dead-letters it itself."""
        log.error(
            "could not publish for this delivery; handing it to the dead letters",
            extra={
                "message_id": delivery.properties.message_id,
                "error": error[:MAX_REASON_CHARS],
            },
        )
        METRICS.dead_lettered(UNREADABLE, "publish_failed")
        # The work queues dead-letter a rejected message at least once, reason `rejected`.
        link.settle(tag, Settlement.REJECT)

    def _publish_retry(
        self,
        link: Link,
        queue: WorkQueue,
        delivery: Delivery,
        decision: Retry,
        published: Published,
    ) -> None:
        tiers = queue.delays_seconds
        tier = next((i for i, base in enumerate(tiers) if base >= decision.delay), len(tiers) - 1)
        # Messages of one delay queue expire within (1 - jitter) x its delay and its delay, so
        # one waiting at the head never holds the others back by more than that spread.
        base = tiers[tier]
        floor = base * (1 - self.settings.retry_jitter)
        expiration = min(base, max(decision.delay, floor))

        def said() -> None:
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

        link.publish(
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
            lambda outcome: published(outcome, said),
        )

    def _publish_dead_letter(
        self,
        link: Link,
        delivery: Delivery,
        decision: DeadLetter,
        published: Published,
    ) -> None:
        headers = dead_letter_headers(decision.code, decision.reason, delivery.properties.headers)

        def said() -> None:
            METRICS.dead_lettered(decision.command_type, decision.code)
            log.warning(
                "dead-lettered",
                extra={
                    "message_id": delivery.properties.message_id,
                    "code": decision.code,
                    "reason": decision.reason[:MAX_REASON_CHARS],
                },
            )

        link.publish(
            self.settings.dead_letter_exchange,
            self.settings.dead_letter_queue,
            delivery.body,
            BasicProperties(
                content_type=delivery.properties.content_type,
                message_id=delivery.properties.message_id,
                delivery_mode=2,
                headers=headers,
            ),
            lambda outcome: published(outcome, said),
        )
