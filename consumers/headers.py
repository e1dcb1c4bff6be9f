"""The AMQP headers the service writes for itself, and when it believes them on the way back.

A retried or continued command travels through the service's own delay queues carrying a few
counters (`x-instance-service-*`). A sender can put the same names on a message it publishes, so
they are read only from a delivery that came back from one of those delay queues: delivered
through the default exchange with the work queue's name as routing key, and dead-lettered
(expired) from one of its delay queues according to `x-death`. This relies on publishers having
write permission on `instance.commands` only, never on the default exchange (deploy/README.md).

Every header the service writes is built here from typed values (integers: pika cannot encode a
float), plus a short allow-list copied from the delivery (the W3C trace context, when short).
Nothing else a sender wrote is copied: a header block that barely fitted the broker's frame
size, copied and extended, would no longer fit.
"""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeGuard

RETRIES_HEADER = "x-instance-service-retries"
UNEXPECTED_HEADER = "x-instance-service-unexpected-failures"
BUSY_HEADER = "x-instance-service-busy"
NOT_BEFORE_HEADER = "x-instance-service-not-before-ms"
"""Epoch milliseconds before which a delayed message must not run (delays longer than a tier)."""
REJECTION_CODE_HEADER = "x-instance-service-rejection-code"
REJECTION_REASON_HEADER = "x-instance-service-rejection-reason"
DELIVERY_COUNT_HEADER = "x-delivery-count"  # set by quorum queues on redelivery
DEATH_HEADER = "x-death"  # set by the broker when a message is dead-lettered

PASSED_ON = ("traceparent", "tracestate")
"""The only headers of a delivery copied onto a message the service re-publishes."""
MAX_PASSED_ON_CHARS = 512
MAX_COUNTER = 1_000_000
"""A counter above this is not one the service wrote: read as 0."""
MAX_DELAY_SECONDS = 3600.0
"""The longest delay the service asks for; a not-before further ahead is clamped to it."""
MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class Counters:
    """The service's own bookkeeping of one command's attempts."""

    retries: int = 0
    unexpected: int = 0
    busy: int = 0
    not_before_ms: int = 0
    """Epoch milliseconds; 0: due now."""

    @classmethod
    def read(cls, headers: Mapping[str, object], now: float | None = None) -> "Counters":
        """The counters of a delivery that came back from a delay queue, bounded."""
        clock = time.time() if now is None else now
        latest = int((clock + MAX_DELAY_SECONDS) * 1000)
        not_before = headers.get(NOT_BEFORE_HEADER)
        return cls(
            retries=_counter(headers.get(RETRIES_HEADER)),
            unexpected=_counter(headers.get(UNEXPECTED_HEADER)),
            busy=_counter(headers.get(BUSY_HEADER)),
            not_before_ms=min(not_before, latest) if _is_count(not_before) else 0,
        )

    def counted(self, kind: Literal["retries", "unexpected", "busy"]) -> "Counters":
        """These counters with one more attempt of `kind`, due now (a delay queue times it)."""
        counts: dict[str, int] = {kind: getattr(self, kind) + 1}
        return replace(self, not_before_ms=0, **counts)

    def wait_seconds(self, now: float | None = None) -> float:
        """How long until the message is due (0 or less: now)."""
        clock = time.time() if now is None else now
        return self.not_before_ms / 1000 - clock if self.not_before_ms else 0.0

    def headers(self) -> dict[str, int]:
        """As AMQP headers: integers only, zeros left out."""
        named = {
            RETRIES_HEADER: self.retries,
            UNEXPECTED_HEADER: self.unexpected,
            BUSY_HEADER: self.busy,
            NOT_BEFORE_HEADER: self.not_before_ms,
        }
        return {name: value for name, value in named.items() if value}


def _is_count(value: object) -> TypeGuard[int]:
    # bool is an int in Python; a sender's `true` is not a count.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _counter(value: object) -> int:
    return value if _is_count(value) and value <= MAX_COUNTER else 0


def came_back(
    headers: Mapping[str, object],
    exchange: str,
    routing_key: str,
    queue: str,
    delay_queues: Sequence[str],
) -> bool:
    """Whether a delivery is one the service sent through one of its own delay queues."""
    if exchange != "" or routing_key != queue:
        return False
    deaths = headers.get(DEATH_HEADER)
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], Mapping):
        return False
    latest = deaths[0]  # the broker puts the most recent death first
    return _text(latest.get("queue")) in delay_queues and _text(latest.get("reason")) == "expired"


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def passed_on(headers: Mapping[str, object]) -> dict[str, str]:
    """The allow-listed headers of a delivery, when they are short printable strings."""
    kept = {}
    for name in PASSED_ON:
        value = _text(headers.get(name))
        if value and len(value) <= MAX_PASSED_ON_CHARS and value.isascii() and value.isprintable():
            kept[name] = value
    return kept


def retry_headers(counters: Counters, received: Mapping[str, object]) -> dict[str, object]:
    """The headers of a message sent to a delay queue."""
    return {**passed_on(received), **counters.headers()}


def dead_letter_headers(
    code: str, reason: str, received: Mapping[str, object]
) -> dict[str, object]:
    """The headers of a message sent to the dead letters: why, and the trace context."""
    return {
        **passed_on(received),
        REJECTION_CODE_HEADER: code[:MAX_REASON_CHARS],
        REJECTION_REASON_HEADER: reason[:MAX_REASON_CHARS],
    }
