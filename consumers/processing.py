"""The one place that decides what becomes of a delivery: acknowledge, retry later, or
dead-letter, after recording the command's outcome. No pika here: the runtime carries out the
decision on the connection thread.

    parse ─ refused ──────────────────────────────> rejected event + dead-letter
      │ already answered (inbox) ──────────────────> ack
      └ lock instance ─ busy ──────────────────────> retry (short)
           └ admit ─ stale / state / unknown ───────> rejected event + dead-letter
                └ handler ─ Completed ─────────────> outcome + event, ack
                           Continue ───────────────> progress recorded, continuation scheduled, ack
                           RetryableError ─────────> retry after the schedule's delay
                           PermanentError ─────────> failed event + dead-letter
                           anything else ──────────> retry, until the limit, then failed
"""

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from consumers.settings import ConsumerSettings
from handlers.registry import HandlerRegistry
from handlers.results import Completed, HandlerContext
from messages.amqp import AmqpProperties
from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, PermanentError, RetryableError
from messages.events import CommandFailedData, CommandFailedEvent, CommandRejectedEvent, ErrorInfo
from messages.parsing import parse_command
from messages.settings import ContractSettings
from store.ledger import Ledger
from store.locks import InstanceBusyError
from store.records import InstanceRecord, InstanceUpdate, Outcome

log = logging.getLogger(__name__)

RETRIES_HEADER = "x-instance-service-retries"
UNEXPECTED_HEADER = "x-instance-service-unexpected-failures"


@dataclass(frozen=True)
class Ack:
    """Done with this delivery: its outcome is recorded (or it continues by itself)."""

    note: str


@dataclass(frozen=True)
class Retry:
    """Deliver again after `delay` seconds, with these counters in its headers."""

    delay: float
    reason: str
    retries: int
    unexpected_failures: int


@dataclass(frozen=True)
class DeadLetter:
    """Refused for good: keep it in the dead-letter queue with this reason."""

    code: str
    reason: str


Decision = Ack | Retry | DeadLetter


@dataclass(frozen=True)
class Delivery:
    """What the broker handed over, without pika."""

    body: bytes
    properties: AmqpProperties

    def counter(self, header: str) -> int:
        """A retry counter from the headers (0 when absent or unreadable)."""
        value = self.properties.headers.get(header, 0)
        return value if isinstance(value, int) and value >= 0 else 0


class Processor:
    """Turns deliveries into recorded outcomes and decisions."""

    def __init__(
        self,
        ledger: Ledger,
        registry: HandlerRegistry,
        settings: ConsumerSettings,
        contract: ContractSettings,
        rng: random.Random | None = None,
    ) -> None:
        self.ledger = ledger
        self.registry = registry
        self.settings = settings
        self.contract = contract
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy

    def delay(self, retries: int) -> float:
        """The schedule's delay for the `retries`-th retry, with jitter."""
        delays = self.settings.retry_delays_seconds
        base = delays[min(retries, len(delays) - 1)]
        spread = self.settings.retry_jitter
        return base * (1 + self.rng.uniform(-spread, spread))

    def process(self, delivery: Delivery) -> Decision:
        """Decide about one delivery; every path records what the contract asks for first."""
        try:
            command = parse_command(delivery.body, delivery.properties, self.contract)
        except MessageRejected as rejection:
            self.ledger.record_rejection(rejection, CommandRejectedEvent.for_rejection(rejection))
            return DeadLetter(str(rejection.code), rejection.message)
        stored = self.ledger.outcome_of(command.id)
        if stored is not None:
            return Ack(f"already answered ({stored.outcome}); nothing repeated")
        retries = delivery.counter(RETRIES_HEADER)
        unexpected = delivery.counter(UNEXPECTED_HEADER)
        try:
            return self._run(command)
        except InstanceBusyError as busy:
            # Lock contention passes in a moment; an operation in progress may take minutes:
            # back off along the schedule, but never past its third step.
            return Retry(self.delay(min(retries, 2)), str(busy), retries + 1, unexpected)
        except RetryableError as error:
            delay = error.delay if error.delay is not None else self.delay(retries)
            return Retry(delay, str(error), retries + 1, unexpected)
        except Exception as error:
            if unexpected + 1 < self.settings.max_unexpected_failures:
                log.warning(
                    "unexpected failure; will retry",
                    exc_info=True,
                    extra={"command_id": command.id, "command_type": command.type},
                )
                return Retry(self.delay(unexpected), repr(error), retries, unexpected + 1)
            log.exception(
                "unexpected failure, final",
                extra={"command_id": command.id, "command_type": command.type},
            )
            failure = PermanentError("unexpected_error", f"{type(error).__name__}: {error}")
            return self._fail(command, failure)

    def _run(self, command: AnyCommand) -> Decision:
        with self.ledger.exclusive(command):
            try:
                admission = self.ledger.admit(command)
            except MessageRejected as rejection:
                subject = command.subject if isinstance(command, InstanceCommand) else None
                event = CommandRejectedEvent.for_rejection(
                    rejection, subject=subject, correlationid=command.correlationid or command.id
                )
                self.ledger.record(command, Outcome.REJECTED, event)
                return DeadLetter(str(rejection.code), rejection.message)
            operation_id = self.ledger.begin(command, admission)
            handler = self.registry.handler_for(command.type)
            context = HandlerContext(
                ledger=self.ledger,
                admission=admission,
                operation_id=operation_id,
                deadline=time.monotonic() + self.settings.handler_budget_seconds,
            )
            try:
                result = handler(command, context)
            except PermanentError as failure:
                return self._fail(command, failure, prior=admission.instance)
            if isinstance(result, Completed):
                self.ledger.record(
                    command,
                    Outcome.SUCCEEDED,
                    result.event,
                    update=result.update,
                    more_events=result.more_events,
                )
                return Ack("completed")
            if operation_id is None:
                raise RuntimeError(f"{command.type} asked to continue without an operation")
            self.ledger.advance(operation_id, result.step, **result.result)
            return Retry(result.after_seconds, f"continue at {result.step}", 0, 0)

    def _fail(
        self, command: AnyCommand, failure: PermanentError, prior: InstanceRecord | None = None
    ) -> Decision:
        instance_id = command.subject if isinstance(command, InstanceCommand) else None
        data = CommandFailedData(
            instance_id=instance_id,
            command_id=command.id,
            command_type=command.type,
            error=ErrorInfo(code=failure.code, message=str(failure)),
            rolled_back=failure.rolled_back,
        )
        # Rolled back: the instance is as it was; otherwise the ledger marks it `error`.
        status = prior.status if failure.rolled_back and prior is not None else None
        self.ledger.record(
            command,
            Outcome.FAILED,
            CommandFailedEvent.caused_by(command, data),
            update=InstanceUpdate(status=status, last_error=str(failure)),
        )
        return DeadLetter(f"failed:{failure.code}", str(failure))


def headers_for_retry(decision: Retry, headers: Mapping[str, object]) -> dict[str, object]:
    """The headers a retried message carries: its old ones with the counters updated."""
    updated = dict(headers)
    updated[RETRIES_HEADER] = decision.retries
    updated[UNEXPECTED_HEADER] = decision.unexpected_failures
    return updated
