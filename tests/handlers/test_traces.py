"""One trace from the publisher's span, through the consumer and every Kubernetes call, to the
result event: the real stack, spans collected by an in-memory exporter."""

import time
from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.handlers.harness import Lifecycle, new_instance, provision_data
from tests.telemetry_capture import Telemetry

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]


def _trace_until(
    telemetry: Telemetry, trace_id: int, seen: Callable[[ReadableSpan], bool]
) -> list[ReadableSpan]:
    """The spans of a trace, once one satisfying `seen` has ended (the relay ends its span
    just after the broker's confirm, so the event may be observed a moment before)."""
    deadline = time.monotonic() + 10
    while True:
        spans = [s for s in telemetry.spans.get_finished_spans() if s.context.trace_id == trace_id]
        if any(seen(s) for s in spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def test_a_provision_is_one_trace_from_publisher_to_result_event(
    telemetry: Telemetry, watching_driver: Lifecycle
) -> None:
    driver = watching_driver  # one decision per delivery: see test_parking.py for parked ones
    tracer = trace.get_tracer("billing-service (test)")
    instance_id, subdomain = new_instance()
    with tracer.start_as_current_span("billing publishes", kind=SpanKind.PRODUCER) as publisher:
        command_id = driver.send(
            "odoo.instance.provision.v1", provision_data(instance_id, subdomain)
        )
    trace_id = publisher.get_span_context().trace_id

    event = driver.terminal(command_id)
    assert event["type"] == "odoo.instance.provisioned.v1"
    event_trace = int(event["traceparent"].split("-")[1], 16)
    assert event_trace == trace_id

    mine = _trace_until(telemetry, trace_id, lambda s: s.kind is SpanKind.PRODUCER)
    consumer = [s for s in mine if s.kind is SpanKind.CONSUMER]
    assert len(consumer) == 1
    assert consumer[0].parent is not None
    assert consumer[0].parent.span_id == publisher.get_span_context().span_id
    attributes = consumer[0].attributes or {}
    assert attributes["messaging.system"] == "rabbitmq"
    assert attributes["messaging.message.id"] == command_id
    assert attributes["messaging.destination.name"] == "instance.commands"

    handler = [s for s in _children(mine, consumer[0]) if s.name.startswith("handle ")]
    assert [s.name for s in handler] == ["handle odoo.instance.provision.v1"]
    below = _children(mine, handler[0])
    names = {s.name for s in below}
    assert {"patch Secret", "patch Deployment", "wait Deployment", "health check"} <= names
    assert {"step credentials", "step database", "step health"} <= names
    calls = [
        s for s in below if s.kind is SpanKind.CLIENT and "k8s.resource" in (s.attributes or {})
    ]
    assert all((s.attributes or {})["k8s.namespace.name"] == driver.namespace for s in calls)
    # The event's traceparent names the span that produced it: the handler's.
    assert int(event["traceparent"].split("-")[2], 16) == handler[0].context.span_id

    # The service's own state: each unit of work a CLIENT span inside the trace.
    database = {s.name for s in mine if s.name.startswith("db ")}
    assert {"db outcome_of", "db admit", "db begin", "db advance", "db record"} <= database
    record = next(s for s in mine if s.name == "db record")
    assert record.parent is not None
    assert record.parent.span_id == consumer[0].context.span_id
    assert (record.attributes or {})["db.system.name"] == "sqlite"

    # The relay's publish continues the trace from the event's traceparent.
    producer = [s for s in mine if s.kind is SpanKind.PRODUCER and s is not None]
    published = [
        s for s in producer if (s.attributes or {}).get("messaging.message.id") == event["id"]
    ]
    assert len(published) == 1
    assert published[0].name == "instance.events publish"
    assert published[0].parent is not None
    assert published[0].parent.span_id == handler[0].context.span_id
    assert (published[0].attributes or {})["messaging.rabbitmq.destination.routing_key"] == (
        "odoo.instance.provisioned.v1"
    )

    # Kubernetes calls carry their HTTP status.
    patched = next(s for s in calls if s.name == "patch Deployment")
    assert (patched.attributes or {})["http.response.status_code"] in (200, 201)
