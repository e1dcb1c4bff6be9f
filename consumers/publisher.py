"""Publishing commands from the command line (one, maybe waiting for its result event; or the
backup schedule's many on one channel).

The result is matched by `causationid`, on a private auto-delete queue bound to every event
before the command is published, so a fast answer cannot be missed.
"""

import json
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from consumers.connection import BrokerUnavailableError, open_connection
from consumers.settings import AmqpSettings
from messages.amqp import OutgoingMessage
from messages.serialization import EVENTS_EXCHANGE


class PublishError(Exception):
    """The broker did not take the command."""


@dataclass(frozen=True)
class Published:
    """What happened to a published command."""

    command_id: str
    result: dict[str, Any] | None  # the terminal event, when waited for and received


def _properties(message: OutgoingMessage) -> pika.BasicProperties:
    """The AMQP properties of a command as built (its id is the message id)."""
    return pika.BasicProperties(
        content_type=message.properties.content_type,
        delivery_mode=message.properties.delivery_mode,
        message_id=message.properties.message_id or "",
        headers=dict(message.properties.headers),
    )


def publish_command(
    settings: AmqpSettings,
    message: OutgoingMessage,
    *,
    wait_seconds: float | None = None,
    progress: Callable[[float], None] = lambda _elapsed: None,
) -> Published:
    """Publish with confirms; with `wait_seconds`, also wait that long for the result event."""
    command_id = message.properties.message_id or ""
    connection = open_connection(settings)
    with closing(connection):
        channel = connection.channel()
        queue = ""
        if wait_seconds is not None:
            channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
            queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            channel.queue_bind(queue, EVENTS_EXCHANGE, "#")
        channel.confirm_delivery()
        try:
            channel.basic_publish(
                message.exchange,
                message.routing_key,
                message.body,
                _properties(message),
                mandatory=True,
            )
        except pika.exceptions.UnroutableError as error:
            raise PublishError(
                f"no queue takes {message.routing_key} on {message.exchange}: is a consumer "
                "running (it declares the queues)?"
            ) from error
        except pika.exceptions.NackError as error:
            raise PublishError("the broker refused the command (nack)") from error
        except pika.exceptions.ChannelClosedByBroker as error:
            raise PublishError(
                f"the broker closed the channel: {error.reply_text} (the exchanges are declared "
                "by a consumer; has one run against this vhost?)"
            ) from error
        if wait_seconds is None:
            return Published(command_id, None)
        return Published(
            command_id, _await_result(channel, queue, command_id, wait_seconds, progress)
        )


def _await_result(
    channel: Any,
    queue: str,
    command_id: str,
    wait_seconds: float,
    progress: Callable[[float], None],
) -> dict[str, Any] | None:
    started = time.monotonic()
    next_report = 0.0
    while (elapsed := time.monotonic() - started) < wait_seconds:
        if elapsed >= next_report:
            progress(elapsed)
            next_report += 5.0
        method, _properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            channel.connection.sleep(0.2)
            continue
        event = json.loads(body)
        if event.get("causationid") == command_id:
            return dict(event)
    return None


__all__ = ["BrokerUnavailableError", "PublishError", "Published", "publish_command"]


def publish_commands(
    settings: AmqpSettings,
    messages: Sequence[OutgoingMessage],
    progress: Callable[[int], None] = lambda _published: None,
) -> int:
    """Publish many commands on one channel with confirms (the backup schedule's); how many the
    broker took. Stops at the first the broker refuses (PublishError)."""
    connection = open_connection(settings)
    published = 0
    with closing(connection):
        channel = connection.channel()
        channel.confirm_delivery()
        for message in messages:
            try:
                channel.basic_publish(
                    message.exchange,
                    message.routing_key,
                    message.body,
                    _properties(message),
                    mandatory=True,
                )
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
                raise PublishError(
                    f"the broker did not take {message.properties.message_id} ({error!r}); "
                    f"{published} published before it"
                ) from error
            published += 1
            progress(published)
    return published
