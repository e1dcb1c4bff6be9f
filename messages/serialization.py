"""A typed event out as the bytes and AMQP properties the contract prescribes."""

from messages.amqp import PERSISTENT, AmqpProperties, OutgoingMessage
from messages.envelope import CLOUDEVENTS_CONTENT_TYPE, Envelope

EVENTS_EXCHANGE = "instance.events"
COMMANDS_EXCHANGE = "instance.commands"


def to_message(message: Envelope, exchange: str) -> OutgoingMessage:
    """Structured-mode CloudEvent body, routed by its type, with trace context in headers too."""
    body = message.model_dump_json(by_alias=True, exclude_none=True).encode()
    headers = {
        key: value
        for key in ("traceparent", "tracestate")
        if (value := getattr(message, key)) is not None
    }
    properties = AmqpProperties(
        content_type=CLOUDEVENTS_CONTENT_TYPE,
        message_id=message.id,
        delivery_mode=PERSISTENT,
        headers=headers,
    )
    routing_key = getattr(message, "type")  # noqa: B009 - declared by each concrete model
    return OutgoingMessage(exchange, routing_key, body, properties)


def serialize_event(event: Envelope) -> OutgoingMessage:
    """The event as it goes to `instance.events`."""
    return to_message(event, EVENTS_EXCHANGE)
