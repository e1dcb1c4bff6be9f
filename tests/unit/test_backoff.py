"""The one backoff policy: its schedule, its cap, its jitter range, and the delays the loops had."""

import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.settings import ConsumerSettings
from messages.backoff import RECONNECT, Backoff


class _Extreme(random.Random):
    """Always draws the same fraction of the range: 0.0 is its low end, almost 1.0 its high."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def random(self) -> float:
        return self.fraction


def test_reconnect_doubles_from_half_a_second_and_stays_at_its_thirty_second_cap() -> None:
    assert [RECONNECT.base(attempt) for attempt in range(9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0,
    ]  # fmt: skip
    assert RECONNECT.base(10_000) == 30.0


def test_reconnect_gives_the_delays_of_the_hand_written_loops_it_replaced() -> None:
    """consumers/runtime.py, consumers/watcher.py and k8s/informer.py each had this loop."""
    old_rng, new_rng = random.Random(7), random.Random(7)  # noqa: S311 - reproducible jitter
    delay, old = 0.5, []
    for _ in range(12):
        old.append(delay * (1 + old_rng.random() * 0.2))
        delay = min(delay * 2, 30.0)
    assert [RECONNECT.delay(attempt, new_rng) for attempt in range(12)] == old


def test_the_retry_schedule_gives_the_delays_processor_delay_had() -> None:
    settings = ConsumerSettings()
    old_rng, new_rng = random.Random(3), random.Random(3)  # noqa: S311 - reproducible jitter
    old = []
    for retries in range(8):
        delays = settings.retry_delays_seconds
        base = delays[min(retries, len(delays) - 1)]
        spread = settings.retry_jitter
        old.append(base * (1 + old_rng.uniform(-spread, spread)))
    assert [settings.retry_backoff.delay(retries, new_rng) for retries in range(8)] == old


def test_the_retry_schedule_repeats_its_last_step() -> None:
    settings = ConsumerSettings(retry_delays_seconds=(1.0, 5.0, 30.0), retry_jitter=0.1)
    backoff = settings.retry_backoff
    assert [backoff.base(attempt) for attempt in range(5)] == [1.0, 5.0, 30.0, 30.0, 30.0]
    assert backoff.jitter == (-0.1, 0.1)


@pytest.mark.parametrize(
    ("backoff", "low", "high"),
    [
        (RECONNECT, 1.0, 1.2),  # reconnects only ever wait longer, by up to 20%
        (Backoff.schedule((10.0,), 0.2), 0.8, 1.2),  # retries vary either way
        (Backoff((10.0,)), 1.0, 1.0),  # no jitter, no variation
    ],
)
def test_jitter_reaches_both_ends_of_its_range(backoff: Backoff, low: float, high: float) -> None:
    base = backoff.base(0)
    assert backoff.delay(0, _Extreme(0.0)) == pytest.approx(base * low)
    assert backoff.delay(0, _Extreme(1.0)) == pytest.approx(base * high)


@given(attempt=st.integers(min_value=0, max_value=10_000), seed=st.integers())
def test_every_delay_lies_within_the_cap_and_the_jitter_range(attempt: int, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - reproducible jitter
    reconnect = RECONNECT.delay(attempt, rng)
    assert 0.5 <= reconnect <= 30.0 * 1.2
    assert RECONNECT.base(attempt) <= reconnect <= RECONNECT.base(attempt) * 1.2
    retry = ConsumerSettings().retry_backoff
    delay = retry.delay(attempt, rng)
    assert retry.base(attempt) * 0.8 <= delay <= retry.base(attempt) * 1.2
    assert delay <= 600.0 * 1.2


def test_exponential_ends_on_its_cap_even_when_doubling_overshoots_it() -> None:
    assert Backoff.exponential(first=1.0, cap=5.0, factor=3.0).steps == (1.0, 3.0, 5.0)
    assert Backoff.exponential(first=2.0, cap=2.0).steps == (2.0,)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Backoff(()),
        lambda: Backoff((1.0, -1.0)),
        lambda: Backoff((1.0,), (-1.5, 0.0)),  # a wait below zero
        lambda: Backoff((1.0,), (0.2, 0.1)),  # an upside-down range
        lambda: Backoff.exponential(first=0.0, cap=30.0),  # would never grow
        lambda: Backoff.exponential(first=1.0, cap=30.0, factor=1.0),
        lambda: Backoff.exponential(first=60.0, cap=30.0),
    ],
)
def test_a_policy_that_cannot_work_is_refused(build: Callable[[], Backoff]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        build()


def test_a_policy_is_a_frozen_value() -> None:
    assert Backoff.exponential(first=0.5, cap=30.0, jitter=(0.0, 0.2)) == RECONNECT
    with pytest.raises(AttributeError):
        RECONNECT.steps = (1.0,)  # type: ignore[misc]
