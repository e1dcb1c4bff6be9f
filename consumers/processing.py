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
from dataclasses import dataclass, replace

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from consumers.settings import ConsumerSettings
from handlers.registry import HandlerRegistry
from handlers.results import Completed, Handler, HandlerContext, HandlerResult
from messages.amqp import AmqpProperties
from messages.commands import COMMAND_MODELS, AnyCommand, InstanceCommand
from messages.errors import MessageRejected, PermanentError, RetryableError
from messages.events import CommandFailedData, CommandFailedEvent, CommandRejectedEvent, ErrorInfo
from messages.parsing import parse_command
from messages.settings import ContractSettings
from store.ledger import Ledger
from store.locks import InstanceBusyError
from store.records import InstanceRecord, InstanceUpdate, Outcome, StoredOutcome
from telemetry.logs import command_scope
from telemetry.metrics import METRICS, UNREADABLE
from telemetry.tracing import extracted

log = logging.getLogger(__name__)
tracer = trace.get_tracer("instance_service.consumer")

RETRIES_HEADER = "x-instance-service-retries"
UNEXPECTED_HEADER = "x-instance-service-unexpected-failures"
BUSY_HEADER = "x-instance-service-busy"
NOT_BEFORE_HEADER = "x-instance-service-not-before"
"""Epoch seconds before which a delayed message must not run (delays longer than a tier)."""
DELIVERY_COUNT_HEADER = "x-delivery-count"  # set by quorum queues on redelivery


@dataclass(frozen=True)
class Ack:
    """Done with this delivery: its outcome is recorded (or it continues by itself)."""

    note: str


@dataclass(frozen=True)
class Retry:
    """Deliver again after `delay` seconds, with these header values set.

    `cause` is one of busy, retryable, unexpected, continue, not_due, processing (for metrics).
    """

    delay: float
    reason: str
    headers: dict[str, int | float]
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

    def counter(self, header: str) -> int:
        """A counter from the headers (0 when absent or unreadable)."""
        value = self.properties.headers.get(header, 0)
        return value if isinstance(value, int) and value >= 0 else 0

    def not_before(self) -> float:
        """When a delayed message may run (0: now)."""
        value = self.properties.headers.get(NOT_BEFORE_HEADER, 0)
        return float(value) if isinstance(value, int | float) else 0.0


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
        """Decide about one delivery, in a CONSUMER span continuing the sender's trace."""
        attributes: dict[str, str | int] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": delivery.exchange or "instance.commands",
            "messaging.rabbitmq.destination.routing_key": delivery.routing_key,
            "messaging.message.id": delivery.properties.message_id or "",
            "messaging.message.body.size": len(delivery.body),
        }
        if delivery.queue:
            attributes["messaging.consumer.group.name"] = delivery.queue
        with tracer.start_as_current_span(
            f"{delivery.queue or 'instance.commands'} process",
            context=extracted(delivery.properties.headers, delivery.body),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            seen = _Seen()
            decision = self._process(delivery, seen)
            span.set_attribute("instance_service.decision", type(decision).__name__.lower())
            if isinstance(decision, DeadLetter):
                span.set_status(StatusCode.ERROR, decision.code)
            if isinstance(decision, Retry | DeadLetter):
                decision = replace(decision, command_type=seen.command_type)
            return decision

    def _process(self, delivery: Delivery, seen: "_Seen") -> Decision:
        """Decide about one delivery; every path records what the contract asks for first."""
        counters = {
            header: delivery.counter(header)
            for header in (RETRIES_HEADER, UNEXPECTED_HEADER, BUSY_HEADER)
        }
        wait = delivery.not_before() - time.time()
        if wait > 0.5:  # a long delay travels in hops through the longest delay queue
            return Retry(wait, "not due yet", {NOT_BEFORE_HEADER: delivery.not_before()}, "not_due")
        try:
            command = parse_command(delivery.body, delivery.properties, self.contract)
        except MessageRejected as rejection:
            # Only our own types name a metric series: anything a sender writes would not.
            named = rejection.command_type or UNREADABLE
            seen.command_type = named if named in COMMAND_MODELS else UNREADABLE
            METRICS.received(seen.command_type)
            self.ledger.record_rejection(rejection, CommandRejectedEvent.for_rejection(rejection))
            METRICS.completed(seen.command_type, "rejected", str(rejection.code))
            return DeadLetter(str(rejection.code), rejection.message)
        seen.command_type = command.type
        METRICS.received(command.type)
        instance_id = command.subject if isinstance(command, InstanceCommand) else None
        with command_scope(command.id, command.type, instance_id):
            return self._process_command(command, delivery, counters)

    def _process_command(
        self, command: AnyCommand, delivery: Delivery, counters: dict[str, int]
    ) -> Decision:
        """Answer from the inbox, or run the command holding its instance."""
        stored = self.ledger.outcome_of(command.id)
        if stored is not None:
            return _answered(stored)
        try:
            with self.ledger.exclusive(command):
                # Asked again under the lock: another replica may have just finished it.
                stored = self.ledger.outcome_of(command.id)
                if stored is not None:
                    return _answered(stored)
                return self._run(command, delivery, counters)
        except InstanceBusyError as busy:
            # Lock contention passes in a moment; an operation in progress may take minutes:
            # back off along the schedule, but never past its third step.
            busy_count = counters[BUSY_HEADER]
            return Retry(
                self.delay(min(busy_count, 2)), str(busy), {BUSY_HEADER: busy_count + 1}, "busy"
            )

    def _run(self, command: AnyCommand, delivery: Delivery, counters: dict[str, int]) -> Decision:
        """Admit, run the handler and record its outcome; called holding the instance."""
        ids = {
            "command_id": command.id,
            "command_type": command.type,
            "instance_id": command.subject if isinstance(command, InstanceCommand) else None,
        }
        started = time.monotonic()
        deliveries = delivery.counter(DELIVERY_COUNT_HEADER)
        if delivery.redelivered:
            # After a crash or a lost connection: the inbox and the operation's record decide
            # what is left to do, so this is worth one line, not a warning.
            log.info("command redelivered", extra={**ids, "deliveries": deliveries + 1})
        if deliveries >= self.settings.delivery_limit - 1:
            # The broker would dead-letter the next delivery without an answer: answer now.
            failure = PermanentError(
                "delivery_limit", f"delivered {deliveries + 1} times without an outcome"
            )
            return self._fail(command, failure, prior=self.ledger_instance(command))
        try:
            admission = self.ledger.admit(command)
        except MessageRejected as rejection:
            subject = command.subject if isinstance(command, InstanceCommand) else None
            event = CommandRejectedEvent.for_rejection(
                rejection, subject=subject, correlationid=command.correlationid or command.id
            )
            self.ledger.record(command, Outcome.REJECTED, event)
            METRICS.completed(command.type, "rejected", str(rejection.code))
            return DeadLetter(str(rejection.code), rejection.message)
        try:
            operation_id = self.ledger.begin(command, admission)
            handler = self.registry.handler_for(command.type)
            context = HandlerContext(
                ledger=self.ledger,
                admission=admission,
                operation_id=operation_id,
                deadline=time.monotonic() + self.settings.handler_budget_seconds,
            )
            with tracer.start_as_current_span(
                f"handle {command.type}",
                attributes={
                    f"instance_service.{key}": value
                    for key, value in ids.items()
                    if value is not None
                },
            ) as span:
                result = self._call(handler, command, context, span)
            if isinstance(result, Completed):
                self.ledger.record(
                    command,
                    Outcome.SUCCEEDED,
                    result.event,
                    update=result.update,
                    more_events=result.more_events,
                )
                METRICS.completed(command.type, "succeeded")
                log.info(
                    "command completed",
                    extra={**ids, "event": result.event.type, "seconds": _since(started)},
                )
                return Ack("completed")
            if operation_id is None:
                raise RuntimeError(f"{command.type} asked to continue without an operation")
            self.ledger.advance(operation_id, result.step, **result.result)
            log.info(
                "command continues later",
                extra={**ids, "step": result.step, "seconds": _since(started)},
            )
            headers: dict[str, int | float] = {RETRIES_HEADER: 0, UNEXPECTED_HEADER: 0}
            if result.after_seconds > self.settings.retry_delays_seconds[-1]:
                headers[NOT_BEFORE_HEADER] = time.time() + result.after_seconds
            return Retry(result.after_seconds, f"continue at {result.step}", headers, "continue")
        except RetryableError as error:
            retries = counters[RETRIES_HEADER] + 1
            if retries > self.settings.max_retries:
                failure = PermanentError(
                    "retries_exhausted", f"still failing after {retries - 1} retries: {error}"
                )
                return self._fail(command, failure, prior=admission.instance)
            delay = error.delay if error.delay is not None else self.delay(retries - 1)
            return Retry(delay, str(error), {RETRIES_HEADER: retries})
        except PermanentError as failure:
            return self._fail(command, failure, prior=admission.instance)
        except Exception as error:
            unexpected = counters[UNEXPECTED_HEADER] + 1
            if unexpected < self.settings.max_unexpected_failures:
                log.warning("unexpected failure; will retry", exc_info=True, extra=ids)
                return Retry(
                    self.delay(unexpected - 1),
                    repr(error),
                    {UNEXPECTED_HEADER: unexpected},
                    "unexpected",
                )
            log.exception("unexpected failure, final", extra=ids)
            final = PermanentError("unexpected_error", f"{type(error).__name__}: {error}")
            return self._fail(command, final, prior=admission.instance)

    @staticmethod
    def _call(
        handler: Handler, command: AnyCommand, context: HandlerContext, span: Span
    ) -> HandlerResult:
        """Run the handler, timing it by what it came to."""
        started = time.monotonic()
        result = "unexpected"
        try:
            answer = handler(command, context)
            result = "completed" if isinstance(answer, Completed) else "continue"
            return answer
        except RetryableError as problem:
            result = "retry"
            span.set_status(StatusCode.ERROR, str(problem)[:200])
            raise
        except PermanentError as problem:
            result = "failed"
            span.set_status(StatusCode.ERROR, str(problem)[:200])
            raise
        finally:
            METRICS.handled(command.type, result, time.monotonic() - started)

    def ledger_instance(self, command: AnyCommand) -> InstanceRecord | None:
        """The command's instance as stored, if any."""
        if isinstance(command, InstanceCommand):
            return self.ledger.instance(command.subject)
        return None

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
        log.warning(
            "command failed",
            extra={
                "command_id": command.id,
                "command_type": command.type,
                "instance_id": instance_id,
                "code": failure.code,
                "reason": str(failure),
                "rolled_back": failure.rolled_back,
            },
        )
        # Rolled back: the instance is as it was; otherwise the ledger marks it `error`.
        status = None
        if failure.rolled_back:
            status = self.ledger.status_before(command.id) or (prior.status if prior else None)
        self.ledger.record(
            command,
            Outcome.FAILED,
            CommandFailedEvent.caused_by(command, data),
            update=InstanceUpdate(status=status, last_error=str(failure)),
        )
        METRICS.completed(command.type, "failed", failure.code)
        return DeadLetter(f"failed:{failure.code}", str(failure))


@dataclass
class _Seen:
    """What `process` learns of a delivery while deciding: its command type, once read."""

    command_type: str = UNREADABLE


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _answered(stored: StoredOutcome) -> Decision:
    """Answered before: a success is acknowledged, a refusal goes to the dead letters again."""
    if stored.outcome is Outcome.SUCCEEDED:
        return Ack(f"already answered ({stored.outcome}); nothing repeated")
    return DeadLetter(f"answered:{stored.outcome}", "already answered; see its terminal event")


def headers_for_retry(decision: Retry, headers: Mapping[str, object]) -> dict[str, object]:
    """The headers a retried message carries: its old ones with the decision's values set."""
    updated = {k: v for k, v in headers.items() if k != DELIVERY_COUNT_HEADER}
    updated.update(decision.headers)
    if NOT_BEFORE_HEADER not in decision.headers:
        updated.pop(NOT_BEFORE_HEADER, None)
    return updated
