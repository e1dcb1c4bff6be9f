"""What becomes of deliveries whose decision raised instead of answering (the runtime's last
resort): retried, counted in the message, and dead-lettered once the count is used up, so
nothing cycles for ever; a batch is split up so that only the delivery that provokes a bug ends
dead-lettered. The log lines keep the runtime's logger name."""

import logging

from consumers.delivery import DeadLetter, Decision, Delivery, Retry
from consumers.headers import MAX_REASON_CHARS
from consumers.processing import Processor
from consumers.settings import ConsumerSettings
from messages.errors import RetryableError

log = logging.getLogger("consumers.runtime")


class Escapes:
    """Decides about deliveries whose decision raised."""

    def __init__(self, settings: ConsumerSettings, processor: Processor) -> None:
        self.settings = settings
        self.processor = processor

    def decide_alone(self, deliveries: list[Delivery], error: Exception) -> list[Decision]:
        """An exception escaped a batch's decision (call while handling it).

        A store that went away fails every delivery of the batch alike: each is retried. Any
        other exception may be one delivery's doing (a bug a message provokes): each is decided
        again alone, so that only the one that provokes it ends dead-lettered; handlers that
        ran before are run again, as on a redelivery (their steps are idempotent).
        """
        if len(deliveries) == 1 or isinstance(error, RetryableError):
            return [self.escaped(delivery, error) for delivery in deliveries]
        decisions: list[Decision] = []
        for delivery in deliveries:
            try:
                decisions.append(self.processor.process(delivery))
            except Exception as alone:  # noqa: BLE001 - counted in the message, as above
                decisions.append(self.escaped(delivery, alone))
        return decisions

    def escaped(self, delivery: Delivery, error: Exception) -> Decision:
        """An exception escaped the decision: retry, counted in the message, then dead-letter.

        A RetryableError here came before the command got its own retry count (the state
        database went away while its inbox row was read, say); anything else is a bug or a
        message nothing foresaw. Neither may cycle for ever.
        """
        counters = delivery.counters()
        if isinstance(error, RetryableError):
            retries = counters.retries + 1
            if retries <= self.settings.max_retries:
                log.warning("processing interrupted; will retry", extra={"error": str(error)})
                return Retry(
                    self.processor.delay(retries - 1),
                    f"processing interrupted: {error}",
                    counters.counted("retries"),
                    "processing",
                )
            code = "processing_interrupted"
        else:
            unexpected = counters.unexpected + 1
            if unexpected < self.settings.max_unexpected_failures:
                log.exception("processing failed; the delivery will be retried")
                return Retry(
                    self.processor.delay(unexpected - 1),
                    f"processing failed: {error!r}",
                    counters.counted("unexpected"),
                    "processing",
                )
            log.exception("processing failed, final; dead-lettering the delivery")
            code = "processing_failed"
        return DeadLetter(code, f"{type(error).__name__}: {error}"[:MAX_REASON_CHARS])
