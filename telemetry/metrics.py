"""Metrics: the meter provider from the standard OTEL_* variables, and the service's instruments.

The instruments live on the global meter, created once at import: until `configure_metrics`
installs a provider they record into the API's no-op proxy, afterwards into the provider. Every
layer records through `METRICS`, so the names and attribute keys are written down in this one
module rather than at each call site.

Metrics are exported over OTLP/HTTP every `OTEL_METRIC_EXPORT_INTERVAL` milliseconds (60 s by
default) when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` is set,
and nowhere otherwise; `OTEL_SDK_DISABLED=true` turns them off.
"""

import os
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader

from telemetry.tracing import service_resource

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
"""From a quick answer out of the inbox to a long upgrade: seconds, not the SDK's milliseconds."""

# Attribute keys, shared by the recording sites and the tests.
COMMAND_TYPE = "instance_service.command.type"
OUTCOME = "instance_service.outcome"
RESULT = "instance_service.handler.result"
RETRY_REASON = "instance_service.retry.reason"
ERROR_TYPE = "error.type"
EVENT_TYPE = "cloudevents.event_type"
K8S_VERB = "k8s.verb"
K8S_RESOURCE = "k8s.resource"
STATUS_CODE = "http.response.status_code"

INSTANCE_ID = "instance_service.instance.id"
DOMAIN = "instance_service.domain"
UNREADABLE = "(unreadable)"
"""The command type of a message whose type could not be read."""


def configure_metrics(version: str, readers: tuple[MetricReader, ...] = ()) -> MeterProvider | None:
    """Install the global meter provider; None when OTEL_SDK_DISABLED is true.

    `readers` are added as given (tests pass an in-memory reader); an OTLP exporting reader is
    added when an endpoint variable is set.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    all_readers = list(readers)
    if any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        all_readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    provider = MeterProvider(resource=service_resource(version), metric_readers=all_readers)
    metrics.set_meter_provider(provider)
    return provider


class OutboxSource(Protocol):
    """What the outbox gauges read (the relay; None where the database does not answer)."""

    def backlog(self) -> int | None:
        """Events recorded and not yet published."""

    def oldest_age(self) -> float | None:
        """Seconds the oldest of them has waited (0 when none waits)."""


class FleetSource(Protocol):
    """What the freshness gauges read (the watcher's view of the store)."""

    def last_reconcile(self) -> float | None:
        """Unix time of the last succeeded fleet reconcile (None: never, or unknown)."""

    def backup_ages(self) -> list[tuple[str, float, float]]:
        """(instance id, seconds without a backup, the plan's interval in s) per instance the
        backup schedule looks after."""


def _seconds_histogram(meter: Meter, name: str, description: str) -> Histogram:
    """A histogram of durations in seconds, bucketed by SECONDS_BUCKETS."""
    return meter.create_histogram(
        name, unit="s", description=description, explicit_bucket_boundaries_advisory=SECONDS_BUCKETS
    )


class ServiceMetrics:
    """The instruments of the service and one method per thing worth counting."""

    def __init__(self, meter: Meter) -> None:
        self._received = meter.create_counter(
            "instance_service.commands.received",
            unit="{delivery}",
            description="Command deliveries taken from the work queues, by command type",
        )
        self._completed = meter.create_counter(
            "instance_service.commands.completed",
            unit="{command}",
            description="Commands answered with a terminal event, by type, outcome and error",
        )
        self._duration = _seconds_histogram(
            meter,
            "instance_service.handler.duration",
            description="Time one handler run took, by command type and what it returned",
        )
        self._retries = meter.create_counter(
            "instance_service.commands.retries",
            unit="{delivery}",
            description="Deliveries put back on a delay queue, by command type and reason",
        )
        self._dead_lettered = meter.create_counter(
            "instance_service.commands.dead_lettered",
            unit="{delivery}",
            description="Deliveries moved to the dead-letter queue, by command type and code",
        )
        self._publish_latency = _seconds_histogram(
            meter,
            "instance_service.outbox.publish_latency",
            description="From an event's recording to the broker's confirm, by event type",
        )
        self._ready_to_event = _seconds_histogram(
            meter,
            "instance_service.instance.ready_to_event",
            description="From an instance's pods becoming Ready to its event's confirm",
        )
        self._kubernetes = meter.create_counter(
            "instance_service.kubernetes.requests",
            unit="{request}",
            description="Kubernetes API requests, by verb, resource and status code",
        )
        self._outbox: OutboxSource | None = None
        self._certificates: Callable[[], list[tuple[str, str, float]]] | None = None
        self._heartbeat: Callable[[], float | None] | None = None
        self._fleet: FleetSource | None = None
        self._lock = threading.Lock()
        meter.create_observable_gauge(
            "instance_service.certificate.remaining_validity",
            callbacks=[self._observe_certificates],
            unit="s",
            description="Seconds until each customer domain's certificate expires, by instance "
            "and domain (the watcher's; negative once expired)",
        )
        meter.create_observable_gauge(
            "instance_service.outbox.backlog",
            callbacks=[self._observe_backlog],
            unit="{event}",
            description="Events recorded and not yet published",
        )
        meter.create_observable_gauge(
            "instance_service.outbox.oldest_age",
            callbacks=[self._observe_oldest],
            unit="s",
            description="Seconds the oldest event not yet published has waited (0: none waits)",
        )
        meter.create_observable_gauge(
            "instance_service.watcher.heartbeat_timestamp",
            callbacks=[self._observe_heartbeat],
            unit="s",
            description="Unix time of the watcher's last turn with every informer alive",
        )
        meter.create_observable_gauge(
            "instance_service.reconcile.last_success_timestamp",
            callbacks=[self._observe_reconcile],
            unit="s",
            description="Unix time the last fleet reconcile succeeded (the watcher's, from the "
            "store)",
        )
        meter.create_observable_gauge(
            "instance_service.backup.age",
            callbacks=[self._observe_backup_ages],
            unit="s",
            description="Seconds each scheduled instance has gone without a backup (the "
            "watcher's, from the store)",
        )
        meter.create_observable_gauge(
            "instance_service.backup.interval",
            callbacks=[self._observe_backup_intervals],
            unit="s",
            description="Each scheduled instance's backup interval (its plan's every_hours)",
        )

    # -- commands ------------------------------------------------------------------------

    def received(self, command_type: str) -> None:
        """A delivery was taken from a work queue."""
        self._received.add(1, {COMMAND_TYPE: command_type})

    def completed(self, command_type: str, outcome: str, error: str | None = None) -> None:
        """A command was answered: succeeded, failed or rejected (with its error code)."""
        attributes = {COMMAND_TYPE: command_type, OUTCOME: outcome}
        if error is not None:
            attributes[ERROR_TYPE] = error
        self._completed.add(1, attributes)

    def handled(self, command_type: str, result: str, seconds: float) -> None:
        """A handler run ended: completed, continue, retry or failed."""
        self._duration.record(seconds, {COMMAND_TYPE: command_type, RESULT: result})

    def retried(self, command_type: str, reason: str) -> None:
        """A delivery went to a delay queue: busy, retryable, unexpected, continue or not_due."""
        self._retries.add(1, {COMMAND_TYPE: command_type, RETRY_REASON: reason})

    def dead_lettered(self, command_type: str, code: str) -> None:
        """A delivery went to the dead-letter queue with this code."""
        self._dead_lettered.add(1, {COMMAND_TYPE: command_type, ERROR_TYPE: code})

    # -- events --------------------------------------------------------------------------

    def published(
        self, event_type: str, since_recorded: float, since_ready: float | None = None
    ) -> None:
        """The broker confirmed an event, this long after it was recorded (and after Ready)."""
        attributes = {EVENT_TYPE: event_type}
        self._publish_latency.record(max(since_recorded, 0.0), attributes)
        if since_ready is not None:
            self._ready_to_event.record(max(since_ready, 0.0), attributes)

    def watch_outbox(self, source: OutboxSource) -> None:
        """Report the outbox gauges from this source (the latest one given wins)."""
        with self._lock:
            self._outbox = source

    def unwatch_outbox(self, source: OutboxSource) -> None:
        """Stop reporting from this source, unless another has taken its place."""
        with self._lock:
            if self._outbox is source:
                self._outbox = None

    def _observe_backlog(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            source = self._outbox
        value = source.backlog() if source is not None else None
        return [] if value is None else [Observation(value)]

    def _observe_oldest(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            source = self._outbox
        value = source.oldest_age() if source is not None else None
        return [] if value is None else [Observation(value)]

    # -- the watcher and the fleet's routine work ------------------------------------------

    def watch_heartbeat(self, heartbeat: Callable[[], float | None] | None) -> None:
        """Report the watcher's heartbeat (unix time of its last healthy turn) from this source
        (None: stop reporting it)."""
        with self._lock:
            self._heartbeat = heartbeat

    def _observe_heartbeat(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            source = self._heartbeat
        value = source() if source is not None else None
        return [] if value is None else [Observation(value)]

    def watch_fleet(self, source: FleetSource | None) -> None:
        """Report the freshness gauges (reconcile, backups) from this source (None: stop)."""
        with self._lock:
            self._fleet = source

    def _observe_reconcile(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            source = self._fleet
        value = source.last_reconcile() if source is not None else None
        return [] if value is None else [Observation(value)]

    def _observe_backup_ages(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            source = self._fleet
        if source is None:
            return []
        return [Observation(age, {INSTANCE_ID: i}) for i, age, _ in source.backup_ages()]

    def _observe_backup_intervals(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            source = self._fleet
        if source is None:
            return []
        return [Observation(every, {INSTANCE_ID: i}) for i, _, every in source.backup_ages()]

    def watch_certificates(self, remaining: Callable[[], list[tuple[str, str, float]]]) -> None:
        """Report certificates' remaining validity from this source: (instance, domain, s)."""
        with self._lock:
            self._certificates = remaining

    def _observe_certificates(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            source = self._certificates
        if source is None:
            return []
        return [
            Observation(seconds, {INSTANCE_ID: instance, DOMAIN: domain})
            for instance, domain, seconds in source()
        ]

    # -- Kubernetes ----------------------------------------------------------------------

    def kubernetes_request(
        self, verb: str, resource: str, status: int | None, error: str | None = None
    ) -> None:
        """One API request: its HTTP status, or the error that left it without one."""
        attributes: dict[str, str | int] = {K8S_VERB: verb, K8S_RESOURCE: resource}
        if status is not None:
            attributes[STATUS_CODE] = status
        if error is not None:
            attributes[ERROR_TYPE] = error
        self._kubernetes.add(1, attributes)


METRICS = ServiceMetrics(metrics.get_meter("instance_service"))
