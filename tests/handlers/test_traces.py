"""One trace from the publisher's span, through the consumer and every Kubernetes call, to the
result event: the real stack, spans collected by an in-memory exporter."""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from instance_service import __version__
from telemetry.tracing import configure_tracing
from tests.handlers.harness import Lifecycle, new_instance, provision_data

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """The process's tracer provider, exporting to memory (set once: it is global)."""
    if configure_tracing(__version__, processors=(SimpleSpanProcessor(EXPORTER),)) is None:
        pytest.fail("tracing is disabled (OTEL_SDK_DISABLED)")
    return EXPORTER


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def test_a_provision_is_one_trace_from_publisher_to_result_event(
    spans: InMemorySpanExporter, driver: Lifecycle
) -> None:
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

    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
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
    calls = [s for s in below if s.kind is SpanKind.CLIENT]
    assert all((s.attributes or {})["k8s.namespace.name"] == driver.namespace for s in calls)
    # The event's traceparent names the span that produced it: the handler's.
    assert int(event["traceparent"].split("-")[2], 16) == handler[0].context.span_id
