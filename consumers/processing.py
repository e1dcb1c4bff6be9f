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
                           Wait ───────────────────> progress recorded, parked unacknowledged
                                                     (consumers/parking.py), decided again when
                                                     what it waits for happens
                           RetryableError ─────────> retry after the schedule's delay
                           PermanentError ─────────> failed event + dead-letter
                           anything else ──────────> retry, until the limit, then failed

Batches share the store's work (consumers/batch.py), each delivery answered as alone; `process`
is a batch of one. The body is parsed before anything reads it; counters of earlier attempts
are read only from a delivery back from the service's own delay queues (consumers.headers).
Telemetry is consumers/observed.py's business, what an answer records consumers/answers.py's.
"""

import random
import time
from collections.abc import Sequence

from consumers.answers import Answer, carry_on, completion, failure, refuse, rejection
from consumers.batch import Handover, decide_batch
from consumers.delivery import Ack, DeadLetter, Decision, Delivery, Park, Retry
from consumers.headers import Counters
from consumers.observed import DeliveryTelemetry
from consumers.parking import Parking
from consumers.settings import ConsumerSettings
from handlers.registry import HandlerRegistry
from handlers.results import Completed, HandlerContext, Wait
from messages.commands import AnyCommand
from messages.errors import MessageRejected, PermanentError, RejectionCode, RetryableError
from messages.settings import ContractSettings
from store.ledger import Ledger, Started
from store.locks import InstanceBusyError

__all__ = ["Ack", "DeadLetter", "Decision", "Delivery", "Park", "Processor", "Retry"]


class Processor:
    """Turns deliveries into recorded outcomes and decisions; `observe` tells about them."""

    def __init__(
        self,
        ledger: Ledger,
        registry: HandlerRegistry,
        settings: ConsumerSettings,
        contract: ContractSettings,
        rng: random.Random | None = None,
        parking: Parking | None = None,
    ) -> None:
        self.ledger = ledger
        self.parking = parking
        """Where waiting deliveries are parked; None: handlers wait in their thread."""
        self.registry = registry
        self.settings = settings
        self.contract = contract
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self.observe = DeliveryTelemetry()
        self.handover: Handover | None = None  # None: recorded events wait for a relay's claim

    def publish_through(self, handover: Handover) -> None:
        """Hand the events each batch records to a publisher at once (the runtime's relay)."""
        self.handover = handover

    def delay(self, retries: int) -> float:
        """The schedule's delay for the `retries`-th retry, with jitter."""
        return self.settings.retry_backoff.delay(retries, self.rng)

    def process(self, delivery: Delivery) -> Decision:
        """Decide about one delivery: a batch of one."""
        return self.process_batch([delivery])[0]

    def process_batch(self, deliveries: Sequence[Delivery]) -> list[Decision]:
        """Decide about many deliveries together, observed (consumers/observed.py): one
        transaction admits their commands, one records their outcomes (consumers/batch.py).
        The decisions in input order, each what deciding its delivery alone would answer."""
        return decide_batch(self, deliveries)

    def refuse(
        self, delivery: Delivery, rejection: MessageRejected, counters: Counters
    ) -> Decision:
        """Answer a message that is not a command of ours (or hand on one a newer replica knows)."""
        if (
            rejection.code is RejectionCode.UNSUPPORTED_TYPE
            and delivery.queue in (self.settings.quick_queue, self.settings.long_queue)
            and counters.retries < self.settings.max_retries
        ):
            # Bound to a work queue, so some version of the service serves it: during a rolling
            # upgrade a newer replica takes it from the queue after this delay.
            return Retry(
                self.delay(counters.retries),
                f"type {rejection.command_type} is served by another version of the service",
                counters.counted("retries"),
                "handed_on",
            )
        answer = refuse(self.ledger, rejection)
        if self.handover is not None:  # its answer is written unclaimed: the relay claims it
            self.handover.kick()
        self.observe.refused(rejection)
        return answer

    def busy(self, busy: InstanceBusyError, counters: Counters) -> Retry:
        """Its instance is held: lock contention passes in a moment, an operation in progress
        may take minutes, so back off along the schedule but never past its third step."""
        return Retry(self.delay(min(counters.busy, 2)), str(busy), counters.counted("busy"), "busy")

    def exhausted(self, command: AnyCommand, delivery: Delivery) -> Answer | None:
        """Fail one the broker would dead-letter unanswered next time (None: it may run)."""
        deliveries = delivery.deliveries()
        if delivery.redelivered:
            self.observe.redelivered(command, deliveries)
        if deliveries < self.settings.delivery_limit - 1:
            return None
        limit = f"delivered {deliveries + 1} times without an outcome"
        return self._fail(command, PermanentError("delivery_limit", limit))

    def rejected(self, command: AnyCommand, rejected: MessageRejected) -> Answer:
        """Answer a command admission refused."""
        return Answer(
            DeadLetter(str(rejected.code), rejected.message),
            rejection(command, rejected),
            lambda: self.observe.rejected(command, rejected),
        )

    def run(
        self, command: AnyCommand, delivery: Delivery, counters: Counters, begun: Started
    ) -> Answer:
        """Run the handler of a command admitted and begun; called holding its instance."""
        started = time.monotonic()
        try:
            handler = self.observe.handler(self.registry.handler_for(command.type))
            if delivery.deadline is not None:
                deadline = delivery.deadline  # resumed from the parking lot: the same budget
            else:
                deadline = time.monotonic() + self.settings.handler_budget_seconds
            context = HandlerContext(
                ledger=self.ledger,
                admission=begun.admission,
                operation_id=begun.operation_id,
                deadline=deadline,
                parks=self.parking is not None and self.parking.has_room(),
            )
            result = handler(command, context)
            if isinstance(result, Completed):
                done = result
                return Answer(
                    Ack("completed"),
                    completion(command, result),
                    lambda: self.observe.completed(command, done, started),
                )
            longest = self.settings.retry_delays_seconds[-1]
            paused = result.continued() if isinstance(result, Wait) else result
            later = carry_on(self.ledger, command, begun, paused, counters, longest)
            if isinstance(result, Wait) and self.parking is not None and self._may_park(delivery):
                self.observe.waits(command, result, started)
                return Answer(Park(result.waiting_for, result.until, deadline, otherwise=later))
            self.observe.continues(command, paused.step, started)
            return Answer(later)
        except RetryableError as error:
            retries = counters.retries + 1
            if retries > self.settings.max_retries:
                exhausted = f"still failing after {retries - 1} retries: {error}"
                return self._fail(command, PermanentError("retries_exhausted", exhausted))
            delay = error.delay if error.delay is not None else self.delay(retries - 1)
            return Answer(Retry(delay, str(error), counters.counted("retries")))
        except PermanentError as failed:
            return self._fail(command, failed)
        except Exception as error:  # noqa: BLE001 - observe.unexpected logs it, with its trace
            unexpected = counters.unexpected + 1
            final = unexpected >= self.settings.max_unexpected_failures
            self.observe.unexpected(command, final=final)
            if not final:
                return Answer(
                    Retry(
                        self.delay(unexpected - 1),
                        repr(error),
                        counters.counted("unexpected"),
                        "unexpected",
                    )
                )
            return self._fail(
                command, PermanentError("unexpected_error", f"{type(error).__name__}: {error}")
            )

    def _may_park(self, delivery: Delivery) -> bool:
        """Whether a waiting handler's delivery may stay unacknowledged in the parking lot.

        Each crash of a consumer while a delivery is parked adds one to the broker's count, so a
        command waiting minutes for its Job across unrelated crashes would reach `delivery_limit`.
        Its handler got as far as a wait, so those crashes were not its doing: past half the
        limit it continues through the delay queues instead, as a new message the broker counts
        from zero. A message that kills the consumer before any wait keeps its count."""
        return delivery.deliveries() < self.settings.delivery_limit // 2

    def _fail(self, command: AnyCommand, failed: PermanentError) -> Answer:
        return Answer(
            DeadLetter(f"failed:{failed.code}", str(failed)),
            failure(command, failed),
            lambda: self.observe.failed(command, failed),
        )
