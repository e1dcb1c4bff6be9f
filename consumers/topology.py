"""The broker objects the service needs, declared idempotently at start-up.

    instance.commands (topic) --quick types--> <quick queue> (quorum) --+
                              --long types---> <long queue>  (quorum) --+--> handlers
        | no binding matches (a type no deployed version serves)        |
        +--alternate-exchange--> instance-service.unrouted (fanout)     |
                                   --> <unrouted queue> (quorum) -------+--> unsupported_type
    <work queue>.retry.<N>s (classic): a message waits out its expiration there, then is
        dead-lettered back to its work queue (retries with backoff, never a hot requeue)
    instance-service.dead-letter (direct) --> <dead-letter queue> (quorum): refused messages,
        with the reason in headers; the work queues dead-letter there too when a message
        exceeds the delivery limit
    instance.events (topic): the result events

Quick lifecycle commands and long ones have separate queues so KEDA can scale their consumers
separately, and a burst of provisions never delays a suspend. Which queue a type is bound to is
part of its declaration (handlers/declarations.py); the bindings are derived from the catalog.

Why an alternate exchange for unknown types: a catch-all `odoo.#` binding would copy every
known command into its queue too, and only the broker knows whether *some* version of the
service bound a type (during a rolling upgrade a newer replica serves types an older one does
not know). A message that matches no binding of any version goes to the alternate exchange,
and only those are answered `unsupported_type`. RabbitMQ cannot add the `alternate-exchange`
argument to an exchange declared without it (PRECONDITION_FAILED): on such a broker the service
logs how to set it by policy (`rabbitmqctl set_policy`, which needs the policymaker tag) and
goes on without it.
"""

import logging
from dataclasses import dataclass

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from consumers.connection import open_connection
from consumers.settings import AmqpSettings, ConsumerSettings
from handlers.catalog import Catalog, command_catalog
from handlers.declarations import Queue
from messages.serialization import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

log = logging.getLogger(__name__)

CONFIGURATION_REPLY_CODES = frozenset({403, 406})  # ACCESS_REFUSED, PRECONDITION_FAILED
PRECONDITION_FAILED = 406
ALTERNATE_EXCHANGE = "alternate-exchange"


@dataclass(frozen=True)
class WorkQueue:
    """A work queue, the command types routed to it, and its delay queues."""

    name: str
    command_types: frozenset[str]
    delays_seconds: tuple[float, ...]

    def delay_queue(self, tier: int) -> str:
        """The delay queue of retry tier `tier` (0-based)."""
        return f"{self.name}.retry.{self.delays_seconds[tier]:g}s"

    @property
    def delay_queues(self) -> tuple[str, ...]:
        """Every delay queue of this work queue, shortest delay first."""
        return tuple(self.delay_queue(tier) for tier in range(len(self.delays_seconds)))


def work_queues(
    settings: ConsumerSettings, catalog: Catalog | None = None
) -> tuple[WorkQueue, WorkQueue]:
    """The quick and the long work queue, with the types `catalog` (the service's when None)
    declares on each."""
    catalog = catalog or command_catalog()
    delays = settings.retry_delays_seconds
    return (
        WorkQueue(settings.quick_queue, catalog.routed_to(Queue.QUICK), delays),
        WorkQueue(settings.long_queue, catalog.routed_to(Queue.LONG), delays),
    )


def unrouted_queue(settings: ConsumerSettings) -> WorkQueue:
    """The queue of commands no binding matched; the quick consumers serve it."""
    return WorkQueue(settings.unrouted_queue, frozenset(), settings.retry_delays_seconds)


def served_queues(
    settings: ConsumerSettings, catalog: Catalog | None = None
) -> tuple[WorkQueue, ...]:
    """The work queues this process consumes (`settings.queues`); all are declared anyway."""
    quick, long = work_queues(settings, catalog)
    unrouted = unrouted_queue(settings)
    return {
        "all": (quick, long, unrouted),
        "quick": (quick, unrouted),
        "long": (long,),
    }[settings.queues]


def queue_for(
    command_type: str, settings: ConsumerSettings, catalog: Catalog | None = None
) -> WorkQueue:
    """The work queue a command type is routed to."""
    catalog = catalog or command_catalog()
    quick, long = work_queues(settings, catalog)
    return long if catalog.queue_of(command_type) is Queue.LONG else quick


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


def _declare_commands_exchange(channel: BlockingChannel, settings: ConsumerSettings) -> None:
    """instance.commands with its alternate exchange, on a channel of its own.

    An exchange declared by an older version has no `alternate-exchange` argument, and the
    broker refuses to add one by declaration: that costs a channel, so a throwaway one is used,
    and the service goes on with the exchange as it is.
    """
    probe = channel.connection.channel()
    try:
        probe.exchange_declare(
            COMMANDS_EXCHANGE,
            "topic",
            durable=True,
            arguments={ALTERNATE_EXCHANGE: settings.unrouted_exchange},
        )
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code != PRECONDITION_FAILED:
            raise
        log.warning(
            "instance.commands exists without an alternate exchange: commands of a type no "
            "version serves are not answered until a policy sets one",
            extra={
                "fix": "rabbitmqctl set_policy -p <vhost> --apply-to exchanges "
                f"instance-commands-unrouted '^{COMMANDS_EXCHANGE}$' "
                f'\'{{"{ALTERNATE_EXCHANGE}":"{settings.unrouted_exchange}"}}\'',
                "error": error.reply_text,
            },
        )
    finally:
        if probe.is_open:
            probe.close()


def _declare(channel: BlockingChannel, settings: ConsumerSettings) -> None:
    channel.exchange_declare(settings.unrouted_exchange, "fanout", durable=True)
    _declare_commands_exchange(channel, settings)
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
    channel.exchange_declare(settings.dead_letter_exchange, "direct", durable=True)
    channel.queue_declare(
        settings.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    channel.queue_bind(
        settings.dead_letter_queue,
        settings.dead_letter_exchange,
        routing_key=settings.dead_letter_queue,
    )
    for queue in (*work_queues(settings), unrouted_queue(settings)):
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
        if queue.name == settings.unrouted_queue:
            channel.queue_bind(queue.name, settings.unrouted_exchange, routing_key="")
        for delay_queue in queue.delay_queues:
            channel.queue_declare(
                delay_queue,
                durable=True,
                arguments={
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue.name,
                },
            )
