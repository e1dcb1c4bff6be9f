"""The broker objects the service needs, declared idempotently at start-up.

    instance.commands (topic) --quick types--> <quick queue> (quorum) --+
                              --long types---> <long queue>  (quorum) --+--> handlers
    <work queue>.retry.<N>s (classic): a message waits out its expiration there, then is
        dead-lettered back to its work queue (retries with backoff, never a hot requeue)
    instance-service.dead-letter (direct) --> <dead-letter queue> (quorum): refused messages,
        with the reason in headers; the work queues dead-letter there too when a message
        exceeds the delivery limit
    instance.events (topic): the result events

Quick lifecycle commands and long ones have separate queues so KEDA can scale their consumers
separately, and a burst of provisions never delays a suspend.
"""

from dataclasses import dataclass

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from consumers.connection import open_connection
from consumers.settings import AmqpSettings, ConsumerSettings
from messages.commands import COMMAND_MODELS
from messages.serialization import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

LONG_COMMANDS = frozenset(
    {
        "odoo.instance.provision.v1",
        "odoo.instance.backup.v1",
        "odoo.instance.restore.v1",
        "odoo.instance.upgrade.v1",
        "odoo.instance.delete.v1",
        "odoo.fleet.reconcile.v1",
    }
)
QUICK_COMMANDS = frozenset(COMMAND_MODELS) - LONG_COMMANDS
CONFIGURATION_REPLY_CODES = frozenset({403, 406})  # ACCESS_REFUSED, PRECONDITION_FAILED


@dataclass(frozen=True)
class WorkQueue:
    """A work queue, the command types routed to it, and its delay queues."""

    name: str
    command_types: frozenset[str]
    delays_seconds: tuple[float, ...]

    def delay_queue(self, tier: int) -> str:
        """The delay queue of retry tier `tier` (0-based)."""
        return f"{self.name}.retry.{self.delays_seconds[tier]:g}s"


def work_queues(settings: ConsumerSettings) -> tuple[WorkQueue, WorkQueue]:
    """The quick and the long work queue."""
    delays = settings.retry_delays_seconds
    return (
        WorkQueue(settings.quick_queue, QUICK_COMMANDS, delays),
        WorkQueue(settings.long_queue, LONG_COMMANDS, delays),
    )


def served_queues(settings: ConsumerSettings) -> tuple[WorkQueue, ...]:
    """The work queues this process consumes (`settings.queues`); all are declared anyway."""
    quick, long = work_queues(settings)
    return {"all": (quick, long), "quick": (quick,), "long": (long,)}[settings.queues]


def queue_for(command_type: str, settings: ConsumerSettings) -> WorkQueue:
    """The work queue a command type is routed to."""
    quick, long = work_queues(settings)
    return long if command_type in LONG_COMMANDS else quick


class TopologyError(Exception):
    """The broker refuses the declared topology (changed arguments, missing rights): fatal."""


def declare_on_broker(amqp: AmqpSettings, settings: ConsumerSettings) -> None:
    """Connect, declare everything, disconnect: for an install step that runs before any
    consumer, so commands published while every consumer is scaled to zero are kept."""
    connection = open_connection(amqp)
    try:
        declare(connection.channel(), settings)
    finally:
        if connection.is_open:
            connection.close()


def declare(channel: BlockingChannel, settings: ConsumerSettings) -> None:
    """Declare exchanges, queues and bindings; a no-op when they exist as declared.

    Raises TopologyError when the broker refuses (an existing queue declared with other
    arguments, or no configure permission on the vhost).
    """
    try:
        _declare(channel, settings)
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code in CONFIGURATION_REPLY_CODES:
            raise TopologyError(
                f"the broker refused the topology: {error.reply_text} (queue arguments "
                "cannot change on an existing queue; rename it or delete the old one)"
            ) from error
        raise


def _declare(channel: BlockingChannel, settings: ConsumerSettings) -> None:
    for exchange in (COMMANDS_EXCHANGE, EVENTS_EXCHANGE):
        channel.exchange_declare(exchange, "topic", durable=True)
    channel.exchange_declare(settings.dead_letter_exchange, "direct", durable=True)
    channel.queue_declare(
        settings.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    channel.queue_bind(
        settings.dead_letter_queue,
        settings.dead_letter_exchange,
        routing_key=settings.dead_letter_queue,
    )
    for queue in work_queues(settings):
        channel.queue_declare(
            queue.name,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": settings.delivery_limit,
                "x-dead-letter-exchange": settings.dead_letter_exchange,
                "x-dead-letter-routing-key": settings.dead_letter_queue,
                # At-least-once dead-lettering: nothing dropped between the two queues.
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        for command_type in sorted(queue.command_types):
            channel.queue_bind(queue.name, COMMANDS_EXCHANGE, routing_key=command_type)
        for tier in range(len(queue.delays_seconds)):
            channel.queue_declare(
                queue.delay_queue(tier),
                durable=True,
                arguments={
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue.name,
                },
            )
