"""What the broker handed over (`Delivery`, without pika) and what becomes of it (`Decision`):
the words shared by the decision (consumers/processing.py), its telemetry (consumers/observed.py)
and the runtime that carries a decision out on the connection thread."""

from dataclasses import dataclass

from consumers.headers import DELIVERY_COUNT_HEADER, Counters
from messages.amqp import AmqpProperties
from messages.commands import AnyCommand
from messages.errors import MessageRejected
from messages.parsing import parse_command
from messages.serialization import COMMANDS_EXCHANGE
from messages.settings import ContractSettings
from telemetry.metrics import UNREADABLE


@dataclass(frozen=True)
class Ack:
    """Done with this delivery: its outcome is recorded (or it continues by itself)."""

    note: str


@dataclass(frozen=True)
class Retry:
    """Deliver again after `delay` seconds, carrying these counters.

    `cause` is one of busy, retryable, unexpected, continue, not_due, processing, handed_on
    (for metrics).
    """

    delay: float
    reason: str
    counters: Counters
    cause: str = "retryable"
    command_type: str = UNREADABLE


@dataclass(frozen=True)
class DeadLetter:
    """Refused for good: keep it in the dead-letter queue with this reason."""

    code: str
    reason: str
    command_type: str = UNREADABLE


Decision = Ack | Retry | DeadLetter


@dataclass(frozen=True)
class Delivery:
    """What the broker handed over, without pika."""

    body: bytes
    properties: AmqpProperties
    queue: str = ""
    exchange: str = ""
    routing_key: str = ""
    redelivered: bool = False
    """The broker handed it out before (to a consumer that died or gave it back)."""
    came_back: bool = False
    """It came back from one of the service's own delay queues: its counters are the service's."""

    def counters(self, now: float | None = None) -> Counters:
        """The service's counters of earlier attempts (none on a message as first published)."""
        return Counters.read(self.properties.headers, now) if self.came_back else Counters()

    def parse(self, contract: ContractSettings) -> AnyCommand | MessageRejected:
        """Its command, or why it is refused."""
        # Only as first published is the routing key the sender's: a retry comes back with the
        # work queue's name as its key.
        routing_key = self.routing_key if self.exchange == COMMANDS_EXCHANGE else None
        try:
            return parse_command(self.body, self.properties, contract, routing_key=routing_key)
        except MessageRejected as rejection:
            return rejection

    def deliveries(self) -> int:
        """How often the broker delivered it before (its count only on a redelivery, which the
        broker sets; a sender's `x-delivery-count` on a first delivery means nothing)."""
        if not self.redelivered:
            return 0
        value = self.properties.headers.get(DELIVERY_COUNT_HEADER)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1
