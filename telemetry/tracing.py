"""Traces: the tracer provider from the standard OTEL_* variables, and trace context on the bus.

Spans are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and nowhere otherwise; `OTEL_SDK_DISABLED=true`
turns tracing off. The resource names the service, its version and, in a cluster, the pod
(`POD_NAME` from the downward API, else the host name); `OTEL_SERVICE_NAME` and
`OTEL_RESOURCE_ATTRIBUTES` add or override attributes as usual.

Trace context travels in AMQP headers (W3C `traceparent`/`tracestate`) and, as CloudEvents'
distributed-tracing extension, in the message body; a delivery's context is read from the
headers first and, when the headers carry none, from the body once the consumer has parsed it.
"""

import os
import socket
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

TRACE_KEYS = ("traceparent", "tracestate")
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def service_resource(version: str) -> Resource:
    """service.name, service.version, the pod's name and the process's instance id, merged with
    OTEL_* attributes."""
    pod = os.environ.get("POD_NAME")
    attributes = {
        SERVICE_NAME: "instance-service",
        SERVICE_VERSION: version,
        "k8s.pod.name": pod or socket.gethostname(),
        # One per process: Prometheus' `instance` label. Without it every replica would write
        # the same series over OTLP and the receiver refuses their samples as out of order.
        "service.instance.id": pod or f"{socket.gethostname()}:{os.getpid()}",
    }
    # What the operator sets (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME) wins over these
    # defaults: `Resource.create` alone would let the defaults win.
    return Resource.create(attributes).merge(OTELResourceDetector().detect())


def configure_tracing(
    version: str, processors: tuple[SpanProcessor, ...] = ()
) -> TracerProvider | None:
    """Install the global tracer provider; None when OTEL_SDK_DISABLED is true.

    `processors` are added as given (tests pass an in-memory exporter's); OTLP export is added
    when an endpoint variable is set.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    provider = TracerProvider(resource=service_resource(version))
    for processor in processors:
        provider.add_span_processor(processor)
    if any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def carrier_of(
    headers: Mapping[str, object], body_fields: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The trace context of a message: from its headers, else from its parsed CloudEvent.

    `body_fields` are the `traceparent`/`tracestate` of a body that already passed the edge's
    checks; an unchecked body is never parsed here (a deeply nested one would not come back).
    """
    found = {key: value for key in TRACE_KEYS if isinstance(value := headers.get(key), str)}
    if "traceparent" in found:
        return found
    fields = body_fields or {}
    return {key: value for key in TRACE_KEYS if isinstance(value := fields.get(key), str)}


def extracted(
    headers: Mapping[str, object], body_fields: Mapping[str, str] | None = None
) -> Context:
    """The context a delivery continues (empty: a new trace)."""
    return propagate.extract(carrier_of(headers, body_fields))


def current_trace_context() -> dict[str, str]:
    """`traceparent` (and `tracestate`) of the current span, for a message it produces."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {key: value for key, value in carrier.items() if key in TRACE_KEYS}
