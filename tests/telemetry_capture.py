"""The process's tracer and meter providers, recording into memory for the tests that read them.

OpenTelemetry's global providers can be set once per process, so one session fixture
(`telemetry` in tests/conftest.py) installs both and every test reads from the same exporter
and reader. Metrics are cumulative over the session: tests compare two snapshots.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

Attributes = frozenset[tuple[str, object]]
Snapshot = dict[tuple[str, Attributes], float]
"""(metric name, attributes) -> sum of a counter, count of a histogram, value of a gauge."""


@dataclass(frozen=True)
class Telemetry:
    """What the service recorded in this test process."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def snapshot(self) -> Snapshot:
        """Every data point now."""
        points: Snapshot = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = (metric.name, frozenset((point.attributes or {}).items()))
                        if isinstance(point, HistogramDataPoint):
                            points[key] = float(point.count)
                        elif isinstance(point, NumberDataPoint):
                            points[key] = float(point.value)
        return points

    def wait(self, ready: Callable[[Snapshot], bool], timeout: float = 15) -> Snapshot:
        """The first snapshot for which `ready` holds (work settles a moment after its event
        is seen: the dead-lettering of a poison message, the outbox's publish mark)."""
        deadline = time.monotonic() + timeout
        while not ready(snapshot := self.snapshot()):
            if time.monotonic() > deadline:
                return snapshot  # the caller's assertions say what is missing
            time.sleep(0.1)
        return snapshot


def delta(before: Snapshot, after: Snapshot, name: str, **attributes: object) -> float:
    """How much `name` grew between the snapshots, over the points having these attributes."""
    wanted = set(attributes.items())
    total = 0.0
    for (metric, point_attributes), value in after.items():
        if metric == name and wanted <= point_attributes:
            total += value - before.get((metric, point_attributes), 0.0)
    return total


def attribute_sets(snapshot: Snapshot, name: str) -> list[Mapping[str, object]]:
    """The attribute sets `name` has points for."""
    return [dict(attributes) for metric, attributes in snapshot if metric == name]
