"""The AMQP side of a message as plain data, so messages/ needs no AMQP client."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from messages.envelope import CLOUDEVENTS_CONTENT_TYPE

PERSISTENT = 2


@dataclass(frozen=True)
class AmqpProperties:
    """The AMQP basic properties the contract speaks of."""

    content_type: str | None = CLOUDEVENTS_CONTENT_TYPE
    message_id: str | None = None
    delivery_mode: int | None = PERSISTENT
    headers: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class OutgoingMessage:
    """Everything needed to publish one message: where, what, and with which properties."""

    exchange: str
    routing_key: str
    body: bytes
    properties: AmqpProperties
