"""Other services build commands with the service's own models, trace context included."""

import json

import pytest
from opentelemetry.sdk.trace import TracerProvider

from messages.amqp import AmqpProperties
from messages.commands import SuspendCommand
from messages.errors import MessageRejected, RejectionCode
from messages.examples import INSTANCE_ID
from messages.parsing import parse_command
from messages.publishing import build_command


def test_built_command_is_what_the_service_accepts() -> None:
    message = build_command(
        "odoo.instance.suspend.v1",
        {"instance_id": INSTANCE_ID, "reason": "payment_failed"},
        source="/billing-service",
        command_id="suspend-1",
        correlationid="invoice-9",
    )
    assert message.exchange == "instance.commands"
    assert message.routing_key == "odoo.instance.suspend.v1"
    assert message.properties.message_id == "suspend-1"
    assert message.properties.content_type == "application/cloudevents+json"
    assert message.properties.delivery_mode == 2
    command = parse_command(message.body, message.properties)
    assert isinstance(command, SuspendCommand)
    assert command.subject == INSTANCE_ID
    assert command.correlationid == "invoice-9"
    assert "traceparent" not in json.loads(message.body)  # no span, no trace context


def test_active_span_travels_as_traceparent_in_body_and_headers() -> None:
    tracer = TracerProvider().get_tracer("billing")
    with tracer.start_as_current_span("charge") as span:
        message = build_command(
            "odoo.fleet.reconcile.v1", {}, source="/ops", command_id="reconcile-1"
        )
        trace_id = format(span.get_span_context().trace_id, "032x")
        span_id = format(span.get_span_context().span_id, "016x")
    body = json.loads(message.body)
    assert body["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert message.properties.headers["traceparent"] == body["traceparent"]
    assert "subject" not in body
    parse_command(message.body, AmqpProperties(message_id="reconcile-1"))


def test_invalid_command_fails_at_the_publisher() -> None:
    with pytest.raises(MessageRejected) as raised:
        build_command(
            "odoo.instance.resize.v1",
            {"instance_id": INSTANCE_ID, "plan": {"cpu_millicores": 1, "memory_mib": 1024}},
            source="/billing-service",
        )
    assert raised.value.code is RejectionCode.INVALID_DATA
    fields = {problem.field for problem in raised.value.details}
    assert fields == {"data.plan.cpu_millicores", "data.plan.storage_gib"}


def test_unknown_command_type_fails_at_the_publisher() -> None:
    with pytest.raises(MessageRejected) as raised:
        build_command("odoo.instance.provisioned.v1", {}, source="/x")
    assert raised.value.code is RejectionCode.UNSUPPORTED_TYPE
