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

import random
import time
from dataclasses import replace

from consumers.delivery import Ack, DeadLetter, Decision, Delivery, Retry
from consumers.headers import MAX_DELAY_SECONDS, Counters
from consumers.observed import DeliveryTelemetry, command_type_of
from consumers.settings import ConsumerSettings
from handlers.registry import HandlerRegistry
from handlers.results import Completed, HandlerContext
from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, PermanentError, RejectionCode, RetryableError
from messages.events import CommandFailedData, CommandFailedEvent, CommandRejectedEvent, ErrorInfo
from messages.parsing import parse_command
from messages.serialization import COMMANDS_EXCHANGE
from messages.settings import ContractSettings
from store.ledger import Ledger
from store.locks import InstanceBusyError
from store.records import InstanceUpdate, Outcome, StoredOutcome

__all__ = ["Ack", "DeadLetter", "Decision", "Delivery", "Processor", "Retry"]

DUE_WITHIN_SECONDS = 0.5
"""A delayed message this close to its not-before runs now."""


class Processor:
    """Turns deliveries into recorded outcomes and decisions; `observe` tells about them."""

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
        self.observe = DeliveryTelemetry()

    def delay(self, retries: int) -> float:
        """The schedule's delay for the `retries`-th retry, with jitter."""
        delays = self.settings.retry_delays_seconds
        base = delays[min(retries, len(delays) - 1)]
        spread = self.settings.retry_jitter
        return base * (1 + self.rng.uniform(-spread, spread))

    def process(self, delivery: Delivery) -> Decision:
        """Decide about one delivery, observed (consumers/observed.py)."""
        counters = delivery.counters()
        wait = counters.wait_seconds()
        parsed = self._parse(delivery) if wait <= DUE_WITHIN_SECONDS else None

        def decide() -> Decision:
            if parsed is None:  # a long delay travels in hops through the longest delay queue
                return Retry(wait, "not due yet", counters, "not_due")
            if isinstance(parsed, MessageRejected):
                return self._refuse(delivery, parsed, counters)
            return self._process_command(parsed, delivery, counters)

        decision = self.observe.delivery(delivery, parsed, decide)
        if isinstance(decision, Retry | DeadLetter):
            decision = replace(decision, command_type=command_type_of(parsed))
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

    def _refuse(
        self, delivery: Delivery, rejection: MessageRejected, counters: Counters
    ) -> Decision:
        """Answer a message that is not a command of ours (or hand on one a newer replica knows)."""
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
        self.ledger.record_rejection(rejection, CommandRejectedEvent.for_rejection(rejection))
        self.observe.refused(rejection)
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
        """Admit and begin, run the handler and record its outcome; called holding the instance."""
        started = time.monotonic()
        deliveries = delivery.deliveries()
        if delivery.redelivered:
            self.observe.redelivered(command, deliveries)
        if deliveries >= self.settings.delivery_limit - 1:
            # The broker would dead-letter the next delivery without an answer: answer now.
            failure = PermanentError(
                "delivery_limit", f"delivered {deliveries + 1} times without an outcome"
            )
            return self._fail(command, failure)
        try:
            begun = self.ledger.start(command)
        except MessageRejected as rejection:
            subject = command.subject if isinstance(command, InstanceCommand) else None
            event = CommandRejectedEvent.for_rejection(
                rejection, subject=subject, correlationid=command.correlationid or command.id
            )
            self.ledger.record(command, Outcome.REJECTED, event)
            self.observe.rejected(command, rejection)
            return DeadLetter(str(rejection.code), rejection.message)
        try:
            handler = self.observe.handler(self.registry.handler_for(command.type))
            context = HandlerContext(
                ledger=self.ledger,
                admission=begun.admission,
                operation_id=begun.operation_id,
                deadline=time.monotonic() + self.settings.handler_budget_seconds,
            )
            result = handler(command, context)
            if isinstance(result, Completed):
                self.ledger.record(
                    command,
                    Outcome.SUCCEEDED,
                    result.event,
                    update=result.update,
                    more_events=result.more_events,
                )
                self.observe.completed(command, result, started)
                return Ack("completed")
            if begun.operation_id is None:
                raise RuntimeError(f"{command.type} asked to continue without an operation")
            self.ledger.advance(begun.operation_id, result.step, **result.result)
            self.observe.continues(command, result.step, started)
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
        except Exception as error:  # noqa: BLE001 - observe.unexpected logs it, with its trace
            unexpected = counters.unexpected + 1
            final = unexpected >= self.settings.max_unexpected_failures
            self.observe.unexpected(command, final=final)
            if not final:
                return Retry(
                    self.delay(unexpected - 1),
                    repr(error),
                    replace(counters, unexpected=unexpected, not_before_ms=0),
                    "unexpected",
                )
            return self._fail(
                command, PermanentError("unexpected_error", f"{type(error).__name__}: {error}")
            )

    def _fail(self, command: AnyCommand, failure: PermanentError) -> Decision:
        data = CommandFailedData(
            instance_id=command.subject if isinstance(command, InstanceCommand) else None,
            command_id=command.id,
            command_type=command.type,
            error=ErrorInfo(code=failure.code, message=str(failure)),
            rolled_back=failure.rolled_back,
        )
        # Where the instance goes (as it was, `error`, or back into its billing hold) is the
        # status machine's decision (store.lifecycle.settle); this only says how it ended.
        self.ledger.record(
            command,
            Outcome.FAILED,
            CommandFailedEvent.caused_by(command, data),
            update=InstanceUpdate(last_error=str(failure), rolled_back=failure.rolled_back),
        )
        self.observe.failed(command, failure)
        return DeadLetter(f"failed:{failure.code}", str(failure))


def _answered(stored: StoredOutcome) -> Decision:
    """Answered before: a success is acknowledged, a refusal goes to the dead letters again."""
    if stored.outcome is Outcome.SUCCEEDED:
        return Ack(f"already answered ({stored.outcome}); nothing repeated")
    return DeadLetter(f"answered:{stored.outcome}", "already answered; see its terminal event")
