"""The one place that decides what becomes of a delivery: acknowledge, retry later, or
dead-letter, after recording the command's outcome. No pika here: the runtime carries out the
decision on the connection thread.

    not due (a hop of a long delay) ──────────────> retry (the next hop)
    parse ─ refused ──────────────────────────────> rejected event + dead-letter
      │ unknown type on a work queue ──────────────> retry (a newer replica serves it),
      │                                              bounded, then rejected unsupported_type
      │ already answered (inbox) ──────────────────> ack
      └ lock instance ─ busy ──────────────────────> retry (short)
           └ admit ─ stale / state / unknown ───────> rejected event + dead-letter
                └ handler ─ Completed ─────────────> outcome + event, ack
                           Continue ───────────────> progress recorded, continuation scheduled, ack
                           RetryableError ─────────> retry after the schedule's delay
                           PermanentError ─────────> failed event + dead-letter
                           anything else ──────────> retry, until the limit, then failed

The body is parsed before anything else reads it (trace context included: from the headers, or
from the parsed command). Counters of earlier attempts are read only from a delivery that came
back from the service's own delay queues (consumers.headers).
"""

import logging
import random
import time
from dataclasses import dataclass, replace

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from consumers.headers import DELIVERY_COUNT_HEADER, MAX_DELAY_SECONDS, Counters
from consumers.settings import ConsumerSettings
from handlers.registry import HandlerRegistry
from handlers.results import Completed, Handler, HandlerContext, HandlerResult
from messages.amqp import AmqpProperties
from messages.commands import COMMAND_MODELS, AnyCommand, InstanceCommand
from messages.errors import MessageRejected, PermanentError, RejectionCode, RetryableError
from messages.events import CommandFailedData, CommandFailedEvent, CommandRejectedEvent, ErrorInfo
from messages.parsing import parse_command
from messages.serialization import COMMANDS_EXCHANGE
from messages.settings import ContractSettings
from store.ledger import Ledger
from store.locks import InstanceBusyError
from store.records import InstanceUpdate, Outcome, StoredOutcome
from telemetry.logs import command_scope
from telemetry.metrics import METRICS, UNREADABLE
from telemetry.tracing import extracted

log = logging.getLogger(__name__)
tracer = trace.get_tracer("instance_service.consumer")

DUE_WITHIN_SECONDS = 0.5
"""A delayed message this close to its not-before runs now."""


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

    def deliveries(self) -> int:
        """How often the broker delivered it before (its count only on a redelivery, which the
        broker sets; a sender's `x-delivery-count` on a first delivery means nothing)."""
        if not self.redelivered:
            return 0
        value = self.properties.headers.get(DELIVERY_COUNT_HEADER)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


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
        return self.settings.retry_backoff.delay(retries, self.rng)

    def process(self, delivery: Delivery) -> Decision:
        """Decide about one delivery, in a CONSUMER span continuing the sender's trace."""
        counters = delivery.counters()
        wait = counters.wait_seconds()
        parsed = self._parse(delivery) if wait <= DUE_WITHIN_SECONDS else None
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
            context=extracted(delivery.properties.headers, _trace_fields(parsed)),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            seen = _Seen()
            if parsed is None:  # a long delay travels in hops through the longest delay queue
                decision: Decision = Retry(wait, "not due yet", counters, "not_due")
            else:
                decision = self._process(delivery, parsed, counters, seen)
            span.set_attribute("instance_service.decision", type(decision).__name__.lower())
            if isinstance(decision, DeadLetter):
                span.set_status(StatusCode.ERROR, decision.code)
            if isinstance(decision, Retry | DeadLetter):
                decision = replace(decision, command_type=seen.command_type)
            return decision

    def _parse(self, delivery: Delivery) -> AnyCommand | MessageRejected:
        """The delivery's command, or why it is refused."""
        # Only as first published is the routing key the sender's: a retry comes back with the
        # work queue's name as its key.
        routing_key = delivery.routing_key if delivery.exchange == COMMANDS_EXCHANGE else None
        try:
            return parse_command(
                delivery.body, delivery.properties, self.contract, routing_key=routing_key
            )
        except MessageRejected as rejection:
            return rejection

    def _process(
        self,
        delivery: Delivery,
        parsed: AnyCommand | MessageRejected,
        counters: Counters,
        seen: "_Seen",
    ) -> Decision:
        """Decide about one delivery; every path records what the contract asks for first."""
        if isinstance(parsed, MessageRejected):
            return self._refuse(delivery, parsed, counters, seen)
        command = parsed
        seen.command_type = command.type
        METRICS.received(command.type)
        instance_id = command.subject if isinstance(command, InstanceCommand) else None
        with command_scope(command.id, command.type, instance_id):
            return self._process_command(command, delivery, counters)

    def _refuse(
        self, delivery: Delivery, rejection: MessageRejected, counters: Counters, seen: "_Seen"
    ) -> Decision:
        """Answer a message that is not a command of ours (or hand on one a newer replica knows)."""
        # Only our own types name a metric series: anything a sender writes would not.
        named = rejection.command_type or UNREADABLE
        seen.command_type = named if named in COMMAND_MODELS else UNREADABLE
        work_queues = (self.settings.quick_queue, self.settings.long_queue)
        if (
            rejection.code is RejectionCode.UNSUPPORTED_TYPE
            and delivery.queue in work_queues
            and counters.retries < self.settings.max_retries
        ):
            # Bound to a work queue, so some version of the service serves it: during a rolling
            # upgrade a newer replica takes it from the queue after this delay.
            retries = counters.retries + 1
            return Retry(
                self.delay(retries - 1),
                f"type {rejection.command_type} is served by another version of the service",
                replace(counters, retries=retries, not_before_ms=0),
                "handed_on",
            )
        METRICS.received(seen.command_type)
        self.ledger.record_rejection(rejection, CommandRejectedEvent.for_rejection(rejection))
        METRICS.completed(seen.command_type, "rejected", str(rejection.code))
        return DeadLetter(str(rejection.code), rejection.message)

    def _process_command(
        self, command: AnyCommand, delivery: Delivery, counters: Counters
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
            busy_count = counters.busy
            return Retry(
                self.delay(min(busy_count, 2)),
                str(busy),
                replace(counters, busy=busy_count + 1, not_before_ms=0),
                "busy",
            )

    def _run(self, command: AnyCommand, delivery: Delivery, counters: Counters) -> Decision:
        """Admit, run the handler and record its outcome; called holding the instance."""
        ids = {
            "command_id": command.id,
            "command_type": command.type,
            "instance_id": command.subject if isinstance(command, InstanceCommand) else None,
        }
        started = time.monotonic()
        deliveries = delivery.deliveries()
        if delivery.redelivered:
            # After a crash or a lost connection: the inbox and the operation's record decide
            # what is left to do, so this is worth one line, not a warning.
            log.info("command redelivered", extra={**ids, "deliveries": deliveries + 1})
        if deliveries >= self.settings.delivery_limit - 1:
            # The broker would dead-letter the next delivery without an answer: answer now.
            failure = PermanentError(
                "delivery_limit", f"delivered {deliveries + 1} times without an outcome"
            )
            return self._fail(command, failure)
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
            after = min(result.after_seconds, MAX_DELAY_SECONDS)
            not_before = 0
            if after > self.settings.retry_delays_seconds[-1]:
                not_before = int((time.time() + after) * 1000)
            # A new step starts with fresh counters; only the busy count goes on.
            fresh = Counters(busy=counters.busy, not_before_ms=not_before)
            return Retry(after, f"continue at {result.step}", fresh, "continue")
        except RetryableError as error:
            retries = counters.retries + 1
            if retries > self.settings.max_retries:
                failure = PermanentError(
                    "retries_exhausted", f"still failing after {retries - 1} retries: {error}"
                )
                return self._fail(command, failure)
            delay = error.delay if error.delay is not None else self.delay(retries - 1)
            return Retry(delay, str(error), replace(counters, retries=retries, not_before_ms=0))
        except PermanentError as failure:
            return self._fail(command, failure)
        except Exception as error:
            unexpected = counters.unexpected + 1
            if unexpected < self.settings.max_unexpected_failures:
                log.warning("unexpected failure; will retry", exc_info=True, extra=ids)
                return Retry(
                    self.delay(unexpected - 1),
                    repr(error),
                    replace(counters, unexpected=unexpected, not_before_ms=0),
                    "unexpected",
                )
            log.exception("unexpected failure, final", extra=ids)
            final = PermanentError("unexpected_error", f"{type(error).__name__}: {error}")
            return self._fail(command, final)

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

    def _fail(self, command: AnyCommand, failure: PermanentError) -> Decision:
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
        # Where the instance goes (as it was, `error`, or back into its billing hold) is the
        # status machine's decision (store.lifecycle.settle); this only says how it ended.
        self.ledger.record(
            command,
            Outcome.FAILED,
            CommandFailedEvent.caused_by(command, data),
            update=InstanceUpdate(last_error=str(failure), rolled_back=failure.rolled_back),
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


def _trace_fields(parsed: AnyCommand | MessageRejected | None) -> dict[str, str]:
    """The CloudEvents trace extension of a parsed command (nothing of an unparsed body)."""
    if parsed is None or isinstance(parsed, MessageRejected):
        return {}
    fields = {"traceparent": parsed.traceparent, "tracestate": parsed.tracestate}
    return {key: value for key, value in fields.items() if value is not None}
