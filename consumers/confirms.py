"""Publisher confirms awaited without waiting: each publish gets its sequence number and a
callback, told once what became of it.

In confirm mode the broker numbers a channel's publishes 1, 2, 3, ... and answers each with
`Basic.Ack` or `Basic.Nack`, often for many at once (`multiple`: every number up to this one).
A `mandatory` publish no queue takes comes back first as `Basic.Return` (which names no
number) and is acked after: such a publish is *unroutable*, not confirmed. A return is matched
to the oldest unanswered publish with the same exchange, routing key and message id: the broker
returns a channel's publishes in the order they were sent, so only two identical publishes of
which the first was routed and the second not (a queue deleted between them) could be mixed
up, and then the unroutable outcome goes to the first.

Pure bookkeeping, used on the connection thread only (consumers/link.py).
"""

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

ReturnKey = tuple[str, str, str | None]
"""(exchange, routing key, message id) of a publish, what a `Basic.Return` carries."""


class Outcome(Enum):
    """What became of a publish."""

    CONFIRMED = "confirmed"
    UNROUTABLE = "unroutable"
    """The broker took it, and no queue is bound to take it (returned, then acked)."""
    NACKED = "nacked"
    """The broker refused it (an internal error, or a queue that rejects publishes when full)."""
    LOST = "lost"
    """The channel or connection went away before the broker answered: it may or may not have it."""


OnOutcome = Callable[[Outcome], None]


@dataclass
class _Waiting:
    key: ReturnKey
    on_outcome: OnOutcome
    returned: bool = False


class Confirms:
    """The unanswered publishes of one channel in confirm mode."""

    def __init__(self) -> None:
        self._next = 1
        self._waiting: dict[int, _Waiting] = {}
        """Sequence number -> what waits on it, ascending."""

    def published(self, key: ReturnKey, on_outcome: OnOutcome) -> int:
        """Count a publish just sent; `on_outcome` is called once when its fate is known."""
        seq = self._next
        self._next += 1
        self._waiting[seq] = _Waiting(key, on_outcome)
        return seq

    def returned(self, key: ReturnKey) -> None:
        """The broker returned a publish with this key: its ack, coming next, means unroutable."""
        for waiting in self._waiting.values():
            if waiting.key == key and not waiting.returned:
                waiting.returned = True
                return

    def answered(self, seq: int, *, multiple: bool, acked: bool) -> None:
        """`Basic.Ack` (acked) or `Basic.Nack` for `seq`, or for everything up to it."""
        done = [s for s in self._waiting if s <= seq] if multiple else [seq]
        for s in done:
            waiting = self._waiting.pop(s, None)
            if waiting is None:
                continue
            if not acked:
                waiting.on_outcome(Outcome.NACKED)
            elif waiting.returned:
                waiting.on_outcome(Outcome.UNROUTABLE)
            else:
                waiting.on_outcome(Outcome.CONFIRMED)

    def lost(self) -> None:
        """The channel is gone: every unanswered publish is lost."""
        waiting, self._waiting = self._waiting, {}
        for each in waiting.values():
            each.on_outcome(Outcome.LOST)

    def __len__(self) -> int:
        """Publishes not yet answered."""
        return len(self._waiting)
