"""The telemetry of a delivery, kept around the decision (consumers/processing.py) rather than
inside it: the CONSUMER span and its `messaging.*` attributes, the command's log scope, the
handler's span, the metrics and the log lines.

It works as middleware does in dramatiq (middleware/prometheus.py, retries.py): the decision
opens each delivery's `Observation` (`delivery`), runs its steps `within` it and `ends` it with
the decision, wraps its handler in `handler`, and says what happened through one
hook per outcome (`redelivered`, `rejected`, `completed`, `continues`, `waits`, `unexpected`,
`failed`);
what is measured, traced and logged for each is decided here. The log lines keep the logger
name `consumers.processing`, which collectors and tests know them by.
"""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from consumers.delivery import DeadLetter, Decision, Delivery
from handlers.results import Completed, Continue, Handler, HandlerContext, HandlerResult, Wait
from messages.commands import COMMAND_MODELS, AnyCommand, InstanceCommand
from messages.errors import MessageRejected, PermanentError, RetryableError
from messages.serialization import COMMANDS_EXCHANGE
from telemetry.logs import command_scope
from telemetry.messaging import PROCESS, rabbitmq_attributes
from telemetry.metrics import METRICS, UNREADABLE
from telemetry.tracing import extracted

log = logging.getLogger("consumers.processing")
tracer = trace.get_tracer("instance_service.consumer")

Parsed = AnyCommand | MessageRejected | None
"""A delivery's command, why it was refused, or None for a hop of a long delay (not parsed)."""


class DeliveryTelemetry:
    """Spans, metrics and log lines of the deliveries one Processor decides about."""

    def delivery(self, delivery: Delivery, parsed: Parsed) -> "Observation":
        """Open the delivery's CONSUMER span, continuing the sender's trace, and count what it
        received; the decision's steps for it run `within` the observation, which `ends` with
        the decision."""
        span = tracer.start_span(
            f"{delivery.queue or COMMANDS_EXCHANGE} process",
            context=extracted(delivery.properties.headers, _trace_fields(parsed)),
            kind=SpanKind.CONSUMER,
            attributes=rabbitmq_attributes(
                PROCESS,
                exchange=delivery.exchange or COMMANDS_EXCHANGE,
                routing_key=delivery.routing_key,
                message_id=delivery.properties.message_id or "",
                body_size=len(delivery.body),
                queue=delivery.queue,
            ),
        )
        if parsed is not None and not isinstance(parsed, MessageRejected):
            METRICS.received(parsed.type)
        return Observation(span, parsed)

    def refused(self, rejection: MessageRejected) -> None:
        """A message that is no command of ours was answered as rejected (no type of ours
        names a series: anything a sender writes would not)."""
        command_type = command_type_of(rejection)
        METRICS.received(command_type)
        METRICS.completed(command_type, "rejected", str(rejection.code))

    def handler(self, handler: Handler) -> Handler:
        """The handler run in a span of its own, timed by what it came to."""

        def observed(command: AnyCommand, context: HandlerContext) -> HandlerResult:
            attributes = {f"instance_service.{key}": value for key, value in _ids(command).items()}
            with tracer.start_as_current_span(
                f"handle {command.type}",
                attributes={key: value for key, value in attributes.items() if value is not None},
            ) as span:
                started = time.monotonic()
                result = "unexpected"
                try:
                    answer = handler(command, context)
                    result = _result_of(answer)
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

        return observed

    def redelivered(self, command: AnyCommand, deliveries: int) -> None:
        """The broker handed the command out again, and it was not answered yet."""
        # After a crash or a lost connection: the inbox and the operation's record decide
        # what is left to do, so this is worth one line, not a warning.
        log.info("command redelivered", extra={**_ids(command), "deliveries": deliveries + 1})

    def rejected(self, command: AnyCommand, rejection: MessageRejected) -> None:
        """Admission refused the command; its rejection is recorded."""
        METRICS.completed(command.type, "rejected", str(rejection.code))

    def completed(self, command: AnyCommand, result: Completed, started: float) -> None:
        """The handler completed and its outcome is recorded."""
        METRICS.completed(command.type, "succeeded")
        log.info(
            "command completed",
            extra={**_ids(command), "event": result.event.type, "seconds": _since(started)},
        )

    def continues(self, command: AnyCommand, step: str, started: float) -> None:
        """The handler's step is recorded; a continuation comes back for the next."""
        log.info(
            "command continues later",
            extra={**_ids(command), "step": step, "seconds": _since(started)},
        )

    def waits(self, command: AnyCommand, result: Wait, started: float) -> None:
        """The handler's step is recorded; the delivery waits, parked, for what it names."""
        log.info(
            "command waits",
            extra={
                **_ids(command),
                "step": result.step,
                "waiting_for": result.waiting_for.description,
                "within_seconds": round(max(0.0, result.until - time.time()), 3),
                "seconds": _since(started),
            },
        )

    def unexpected(self, command: AnyCommand, *, final: bool) -> None:
        """Something no handler foresaw escaped it (call while handling the exception)."""
        if final:
            log.exception("unexpected failure, final", extra=_ids(command))
        else:
            log.warning("unexpected failure; will retry", exc_info=True, extra=_ids(command))

    def failed(self, command: AnyCommand, failure: PermanentError) -> None:
        """The command is answered as failed, its failure recorded."""
        log.warning(
            "command failed",
            extra={
                **_ids(command),
                "code": failure.code,
                "reason": str(failure),
                "rolled_back": failure.rolled_back,
            },
        )
        METRICS.completed(command.type, "failed", failure.code)


class Observation:
    """One delivery's span and log scope, entered for each step of a batch that concerns it
    (a batch decides many deliveries in steps they share: each keeps its own trace)."""

    def __init__(self, span: Span, parsed: Parsed) -> None:
        self.span = span
        self.parsed = parsed

    @contextmanager
    def within(self) -> Iterator[None]:
        """Make this delivery's span current (and, for a command, its log scope)."""
        with trace.use_span(self.span, end_on_exit=False):
            parsed = self.parsed
            if parsed is None or isinstance(parsed, MessageRejected):
                yield
            else:
                with command_scope(parsed.id, parsed.type, _instance_of(parsed)):
                    yield

    def ends(self, decision: Decision | None) -> None:
        """End the span with the decision (None: an exception escaped the batch)."""
        if decision is None:
            self.span.set_status(StatusCode.ERROR, "the decision was interrupted")
        else:
            self.span.set_attribute("instance_service.decision", type(decision).__name__.lower())
            if isinstance(decision, DeadLetter):
                self.span.set_status(StatusCode.ERROR, decision.code)
        self.span.end()


def _result_of(answer: HandlerResult) -> str:
    """The `result` label of the handled metric."""
    if isinstance(answer, Completed):
        return "completed"
    return "continue" if isinstance(answer, Continue) else "wait"


def command_type_of(parsed: Parsed) -> str:
    """The command type a delivery's metrics and decision name: ours, else UNREADABLE."""
    if parsed is None:
        return UNREADABLE
    if isinstance(parsed, MessageRejected):
        named = parsed.command_type or UNREADABLE
        return named if named in COMMAND_MODELS else UNREADABLE
    return parsed.type


def _instance_of(command: AnyCommand) -> str | None:
    return command.subject if isinstance(command, InstanceCommand) else None


def _ids(command: AnyCommand) -> dict[str, Any]:
    return {
        "command_id": command.id,
        "command_type": command.type,
        "instance_id": _instance_of(command),
    }


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _trace_fields(parsed: Parsed) -> dict[str, str]:
    """The CloudEvents trace extension of a parsed command (nothing of an unparsed body)."""
    if parsed is None or isinstance(parsed, MessageRejected):
        return {}
    fields = {"traceparent": parsed.traceparent, "tracestate": parsed.tracestate}
    return {key: value for key, value in fields.items() if value is not None}
