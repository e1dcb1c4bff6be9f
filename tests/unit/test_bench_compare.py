"""bench.compare reads figures from what another commit's benchmarks print: the parsers take
both sides' output as printed (the base of issue 18 and now), refuse output without the figures
rather than compare nothing, and the medians put each side beside the raw loops."""

from collections.abc import Callable
from typing import Any

import pytest

from bench.compare import CPU, parse_cold_start, parse_overhead, summarise

OVERHEAD_BEFORE_BATCHES = """\
no-op handler, 100 provisions, one consumer (4 workers per queue)
store        seconds  commands/s
sqlite          2.02        49.4
postgresql      3.23        31.0
"""
OVERHEAD_NOW = """\
no-op handler, 100 provisions, one consumer (4 workers per queue, prefetch 8, batches of up to 10)
store        seconds  commands/s
sqlite          0.81       123.5
postgresql      3.13        32.0
"""
COLD_START = """\
cold start of `instance-service consume`, 3 runs (vhost bench-cold-1a2b)
run  ready s    ack s  event s  RSS MiB   peak
  1    2.358    2.446    2.444    155.1  160.2
median: ready 2.358 s, first command acknowledged 2.446 s, its event received 2.444 s, \
idle RSS 155.1 MiB
import time, each alone in a fresh interpreter:
  instance_service.cli       0.512 s
typed Kubernetes API classes (CoreV1Api, AppsV1Api): 0.301 s, paid by the first command
"""


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (OVERHEAD_BEFORE_BATCHES, {"sqlite": 49.4, "postgresql": 31.0}),
        (OVERHEAD_NOW, {"sqlite": 123.5, "postgresql": 32.0}),
    ],
)
def test_overhead_gives_commands_per_second_by_store(
    output: str, expected: dict[str, float]
) -> None:
    assert parse_overhead(output) == expected


def test_cold_start_gives_its_medians_not_a_run() -> None:
    assert parse_cold_start(COLD_START) == {
        "ready_s": 2.358,
        "acknowledged_s": 2.446,
        "event_s": 2.444,
        "idle_rss_mib": 155.1,
    }


@pytest.mark.parametrize(
    ("parse", "output"),
    [
        (parse_overhead, OVERHEAD_NOW.replace("postgresql", "postgres")),
        (parse_overhead, "Traceback (most recent call last):\n"),
        (parse_cold_start, COLD_START.replace("idle RSS", "RSS")),
        (parse_cold_start, COLD_START.replace("median:", "mean:")),
    ],
)
def test_output_without_every_figure_is_refused(
    parse: Callable[[str], dict[str, float]], output: str
) -> None:
    with pytest.raises(ValueError, match="no "):
        parse(output)


def test_medians_ratios_and_fractions_of_the_raw_loops() -> None:
    def side(sqlite: float, cpu: float) -> dict[str, float]:
        return {"sqlite": sqlite, "postgresql": 30.0, CPU: cpu}

    loops = {"one_at_a_time": 500.0, "batched": 5000.0}
    rounds: list[dict[str, Any]] = [
        {"base": side(40.0, 30.0), "this": side(100.0, 20.0)},
        {"base": side(60.0, 26.0), "this": side(120.0, 22.0)},
        {"base": side(50.0, 28.0), "this": side(150.0, 21.0)},
    ]
    rounds[0]["floor"] = {"sqlite": loops, "postgresql": loops}
    summary = summarise(rounds)
    assert summary["base"] == side(50.0, 28.0)
    assert summary["this"] == side(120.0, 21.0)
    assert summary["this_over_base"] == {"sqlite": 2.4, "postgresql": 1.0, CPU: 0.75}
    assert summary["floor"]["sqlite"] == loops
    assert summary["of_floor"]["this"]["sqlite"] == {"one_at_a_time": 0.24, "batched": 0.024}
    assert summary["of_floor"]["base"]["postgresql"]["one_at_a_time"] == 0.06
    assert "of_floor" not in summarise(rounds[1:])  # --no-floor
