"""Waiting gives the worker back, end to end: provisions through the bus to a consumer with ONE
long-queue worker, whose init Jobs and rollouts are awaited parked, unacknowledged, and resumed
by the informer. A worker that blocked while waiting could never have two deliveries parked at
once."""

import time
from collections.abc import Iterator

import pika
import pytest
from kubernetes import client
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy.engine import Engine

from devstack.kwok_stages import NEVER_READY_LABEL, NEVER_READY_VALUE
from telemetry.metrics import COMMAND_TYPE, RESULT
from tests.handlers.harness import (
    CONSUMER,
    Lifecycle,
    event_kind,
    lifecycle,
    new_instance,
    tenant_settings,
)
from tests.handlers.harness import provision_data as provision
from tests.telemetry_capture import Telemetry, delta

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

T = "odoo.instance."


@pytest.fixture
def one_worker(
    amqp_url: str, engine: Engine, k8s_api: client.ApiClient, namespace: str, admin_url: str
) -> Iterator[Lifecycle]:
    """A consumer with one worker thread per queue and the real handlers."""
    settings = CONSUMER.model_copy(update={"workers": 1})
    with lifecycle(amqp_url, engine, k8s_api, namespace, admin_url, consumer=settings) as running:
        yield running


def test_provisions_wait_parked_while_one_worker_serves_them_all(one_worker: Lifecycle) -> None:
    driver = one_worker
    instances = [new_instance() for _ in range(3)]
    commands = [driver.send(f"{T}provision.v1", provision(*instance)) for instance in instances]
    events = [driver.terminal(command_id) for command_id in commands]
    assert [event_kind(event) for event in events] == ["provisioned"] * 3
    for (instance_id, _), event in zip(instances, events, strict=True):
        assert event["data"]["instance_id"] == instance_id
        assert driver.instance(instance_id).status == "running"
    # Several deliveries waited at once with one worker: waiting held no thread.
    assert driver.parking.most_waiting >= 2
    # Each provision waited (its init Job, its rollout) and was resumed by what it waited for.
    assert driver.parking.resumed >= len(instances)
    assert driver.parking.waiting == 0


def test_a_parked_provision_is_one_trace_of_several_decisions(
    telemetry: Telemetry, driver: Lifecycle
) -> None:
    before = telemetry.snapshot()
    instance_id, subdomain = new_instance()
    tracer = trace.get_tracer("billing-service (test)")
    with tracer.start_as_current_span("billing publishes", kind=SpanKind.PRODUCER) as publisher:
        command_id = driver.send(f"{T}provision.v1", provision(instance_id, subdomain))
    event = driver.terminal(command_id)
    assert event_kind(event) == "provisioned"
    trace_id = publisher.get_span_context().trace_id
    assert int(event["traceparent"].split("-")[1], 16) == trace_id

    deadline = time.monotonic() + 10
    while True:  # the relay ends its span just after the broker's confirm
        spans = [s for s in telemetry.spans.get_finished_spans() if s.context.trace_id == trace_id]
        relayed = [s for s in spans if s.name == "instance.events publish"]
        if relayed or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    decisions = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert all(s.parent is not None for s in decisions)
    assert {s.parent.span_id for s in decisions if s.parent} == {
        publisher.get_span_context().span_id
    }
    assert len(decisions) >= 2  # parked, then resumed: each decision its own span, one trace
    handlers = [s for s in spans if s.name == f"handle {T}provision.v1"]
    assert len(handlers) == len(decisions)
    last = max(handlers, key=lambda s: s.end_time or 0)
    assert int(event["traceparent"].split("-")[2], 16) == last.context.span_id
    # Nothing watched in a worker: the informer saw the Job and the rollout.
    assert not [s for s in spans if s.name.startswith("wait ")]

    after = telemetry.wait(
        lambda now: delta(before, now, "instance_service.outbox.publish_latency") >= 1
    )
    handled = "instance_service.handler.duration"
    kind = {COMMAND_TYPE: f"{T}provision.v1"}
    assert delta(before, after, handled, **kind, **{RESULT: "wait"}) >= 1
    assert delta(before, after, handled, **kind, **{RESULT: "completed"}) == 1


def _ready_messages(amqp_url: str, queue: str) -> int:
    """Messages the queue holds ready for a consumer (not those handed out, unacknowledged)."""
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as connection:
        declared = connection.channel().queue_declare(queue, passive=True)
        return int(declared.method.message_count)


def test_a_parked_delivery_stays_unacknowledged_and_is_handed_back_at_shutdown(
    amqp_url: str, engine: Engine, k8s_api: client.ApiClient, namespace: str, admin_url: str
) -> None:
    never = tenant_settings(pod_labels={NEVER_READY_LABEL: NEVER_READY_VALUE})
    with lifecycle(amqp_url, engine, k8s_api, namespace, admin_url, never) as driver:
        instance_id, subdomain = new_instance()
        driver.send(f"{T}provision.v1", provision(instance_id, subdomain))
        deadline = time.monotonic() + 60
        while driver.parking.waiting == 0:  # parked on its rollout, which never ends
            assert time.monotonic() < deadline, "the provision was never parked"
            time.sleep(0.05)
        # Held by the consumer, unacknowledged: not ready in the queue, not acknowledged.
        assert _ready_messages(amqp_url, CONSUMER.long_queue) == 0
        driver.stop()
        # Handed back (nack, requeued) and forgotten by the lot: never resumed.
        assert driver.parking.waiting == 0
        assert _ready_messages(amqp_url, CONSUMER.long_queue) == 1
        with pika.BlockingConnection(pika.URLParameters(amqp_url)) as connection:
            method, _properties, _body = connection.channel().basic_get(CONSUMER.long_queue)
            assert method is not None
            # The same message given back, not a continuation's new copy from a delay queue.
            assert method.redelivered
        assert driver.instance(instance_id).status == "provisioning"
