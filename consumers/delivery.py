"""What the broker handed over (`Delivery`, without pika) and what becomes of it (`Decision`):
the words shared by the decision (consumers/processing.py), its telemetry (consumers/observed.py)
and the runtime that carries a decision out on the connection thread."""

from dataclasses import dataclass, replace
from typing import Any

from consumers.headers import DELIVERY_COUNT_HEADER, Counters
from handlers.waits import WaitingFor
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


@dataclass(frozen=True)
class Park:
    """Keep the delivery unacknowledged, without a thread, until `waiting_for` happens or
    `until` (epoch seconds) passes; then decide about it again (`resumed`). Its operation's
    step is recorded already, as for a continuation.

    `otherwise` is what becomes of it when it cannot be parked (the parking lot is full or
    closing): the continuation through the delay queues that a Continue makes.
    """

    waiting_for: WaitingFor[Any]
    until: float
    deadline: float
    """time.monotonic() by which the delivery is settled: the budget of its first decision,
    which a resumed decision keeps."""
    otherwise: Retry

    def resumed(self, delivery: "Delivery") -> "Delivery":
        """The delivery to decide about again once the wait is over."""
        return replace(delivery, deadline=self.deadline)


Decision = Ack | Retry | DeadLetter | Park


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
    deadline: float | None = None
    """time.monotonic() by which its handler returns; set on a parked delivery resumed (it keeps
    the budget of its first decision), None: the budget starts when its decision does."""

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
