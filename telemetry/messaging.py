"""The `messaging.*` attributes of a span that takes a message from the broker or gives one to it.

The consumer's CONSUMER span and the relay's PRODUCER span describe a RabbitMQ message the same
way; the attribute names come from the OpenTelemetry semantic conventions (still incubating for
messaging), so no call site spells them.
"""

from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_CONSUMER_GROUP_NAME,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_BODY_SIZE,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
    MessagingSystemValues,
)

PROCESS = MessagingOperationTypeValues.PROCESS.value
SEND = MessagingOperationTypeValues.SEND.value


def rabbitmq_attributes(
    operation: str,
    *,
    exchange: str,
    routing_key: str,
    message_id: str,
    body_size: int,
    queue: str = "",
) -> dict[str, str | int]:
    """A RabbitMQ message's attributes: `operation` is PROCESS or SEND; `queue` (the consumer
    group) only when it was consumed from one."""
    attributes: dict[str, str | int] = {
        MESSAGING_SYSTEM: MessagingSystemValues.RABBITMQ.value,
        MESSAGING_OPERATION_TYPE: operation,
        MESSAGING_DESTINATION_NAME: exchange,
        MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY: routing_key,
        MESSAGING_MESSAGE_ID: message_id,
        MESSAGING_MESSAGE_BODY_SIZE: body_size,
    }
    if queue:
        attributes[MESSAGING_CONSUMER_GROUP_NAME] = queue
    return attributes
