"""The one backoff policy: how long to wait before the next attempt, for every retry loop.

A `Backoff` is a schedule of waits whose last step repeats, each wait varied by a jitter range;
`exponential` builds the doubling one the reconnect loops use (broker and API server:
`RECONNECT`), `schedule` the configured one a retried command follows (Processor.delay). A loop
keeps only its attempt count and asks `delay(attempt, rng)`; starting over is attempt 0.

Why here: consumers/ (broker reconnects, command retries) and k8s/ (the informer's watch) both
need it, and by the import contracts (.importlinter) messages/ is the only package both may
import. It is a value that needs nothing but the standard library, as `RetryableError(delay=...)`
in messages/errors.py already is; a Protocol in k8s/ with the class in consumers/ would only add
a second name for the same thing.

Why not tenacity: its waits read a `RetryCallState` of a call it drives, but none of these loops
is a call to repeat: two wait on a stop event between connections, the watcher schedules its next
connect inside a tick, and a command's retry is a message parked in a delay queue. Nor does it
have a repeating schedule or an upward-only jitter. Computing the delay is the whole need.
"""

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Waits before attempts 0, 1, 2, ...: `steps`, the last repeating, each times 1 + jitter."""

    steps: tuple[float, ...]
    """Base wait before each attempt, in seconds; attempts past the end wait the last one."""
    jitter: tuple[float, float] = (0.0, 0.0)
    """Each wait is its base times 1 + a uniform fraction in [low, high]."""

    def __post_init__(self) -> None:
        low, high = self.jitter
        if not self.steps or min(self.steps) < 0:
            raise ValueError(f"steps must be non-negative and at least one: {self.steps}")
        if not -1 <= low <= high:
            raise ValueError(f"jitter must be a range within [-1, ...): {self.jitter}")

    @classmethod
    def exponential(
        cls, first: float, cap: float, factor: float = 2.0, jitter: tuple[float, float] = (0, 0)
    ) -> "Backoff":
        """`first`, times `factor` per attempt, up to `cap`, which then repeats."""
        if not 0 < first <= cap or factor <= 1:
            raise ValueError(f"need 0 < first <= cap and factor > 1: {first}, {cap}, {factor}")
        steps = [first]
        while steps[-1] < cap:
            steps.append(min(steps[-1] * factor, cap))
        return cls(tuple(steps), jitter)

    @classmethod
    def schedule(cls, steps: tuple[float, ...], jitter: float) -> "Backoff":
        """A configured schedule, each wait varied by up to `jitter` either way."""
        return cls(tuple(steps), (-jitter, jitter))

    def base(self, attempt: int) -> float:
        """The wait before `attempt` (0: the first retry), without jitter."""
        return self.steps[min(max(attempt, 0), len(self.steps) - 1)]

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before `attempt`, with jitter drawn from `rng`."""
        low, high = self.jitter
        return self.base(attempt) * (1 + rng.uniform(low, high))


RECONNECT = Backoff.exponential(first=0.5, cap=30.0, jitter=(0.0, 0.2))
"""Reconnecting to the broker or the API server: 0.5 s doubling to 30 s, each up to 20% longer."""
