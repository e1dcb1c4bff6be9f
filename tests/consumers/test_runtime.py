"""The consumer against the real RabbitMQ: outcomes, redelivery, poison, retries, heartbeats."""

import itertools
import json
import threading
import time
from collections import Counter
from contextlib import closing
from typing import Any

import pika
import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from consumers.settings import ConsumerSettings
from devstack import credentials
from devstack.layout import default_layout
from devstack.rabbitmq import RabbitMQ
from handlers.results import Completed, Continue, HandlerContext, HandlerResult
from messages.commands import AnyCommand, InstanceCommand
from messages.envelope import MAX_BODY_BYTES
from messages.errors import PermanentError, RetryableError
from store.models import Operation
from tests.consumers.harness import (
    FAST,
    Observer,
    ProvisionFake,
    provision_body,
    provisioned,
    publish,
    running_consumer,
)
from tests.stack import management_request, quote

pytestmark = pytest.mark.rabbitmq
PROVISION = "odoo.instance.provision.v1"


def _terminal(bodies: list[dict[str, Any]]) -> dict[str, set[str]]:
    """causation id -> the distinct event ids answering it."""
    answers: dict[str, set[str]] = {}
    for body in bodies:
        answers.setdefault(body.get("causationid", "?"), set()).add(body["id"])
    return answers


def test_a_command_gets_its_terminal_event_with_the_contract_attributes(
    amqp_url: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)
    fake = ProvisionFake()
    with running_consumer(amqp_url, engine, {PROVISION: fake}):
        command_id, body = provision_body(1)
        publish(amqp_url, [(command_id, body)], PROVISION)
        observer.wait_for(lambda bodies: len(bodies) == 1)
    properties, event = observer.seen[0]
    assert event["type"] == "odoo.instance.provisioned.v1"
    assert event["causationid"] == command_id
    assert event["correlationid"] == command_id
    assert event["source"] == "/instance-service"
    assert event["subject"] == json.loads(body)["subject"]
    assert properties.content_type == "application/cloudevents+json"
    assert properties.delivery_mode == 2
    assert properties.message_id == event["id"]
    assert fake.calls == {command_id: 1}


def test_three_deliveries_one_side_effect_one_event_id(amqp_url: str, engine: Engine) -> None:
    observer = Observer(amqp_url)
    fake = ProvisionFake()
    with running_consumer(amqp_url, engine, {PROVISION: fake}):
        message = provision_body(7)
        publish(amqp_url, [message, message, message], PROVISION)
        observer.wait_for(lambda bodies: len(bodies) >= 1)
        time.sleep(2)  # give the two later deliveries time to (not) do anything
        observer.drain()
    assert fake.calls == {message[0]: 1}
    assert _terminal([b for _, b in observer.seen]) == {message[0]: {observer.seen[0][1]["id"]}}
    assert _dead_letters(amqp_url) == []  # a repeated success is acknowledged, not refused


def _dead_letters(amqp_url: str) -> list[tuple[Any, bytes]]:
    found: list[tuple[Any, bytes]] = []
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(
                "instance-service.dead-letter", auto_ack=True
            )
            if method is None:
                return found
            found.append((properties, body))


def test_poison_is_dead_lettered_with_its_reason_and_the_next_command_is_processed(
    amqp_url: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)
    fake = ProvisionFake()
    unknown_type = json.dumps({"id": "poison-type", "type": "odoo.instance.explode.v1"})
    with running_consumer(amqp_url, engine, {PROVISION: fake}):
        publish(
            amqp_url,
            [("", b"\xffnot json"), ("", b"x" * (MAX_BODY_BYTES + 1)), provision_body(3)],
            PROVISION,
        )
        # Under its own type, as publishers route: no binding, so the alternate exchange.
        publish(amqp_url, [("poison-type", unknown_type.encode())], "odoo.instance.explode.v1")
        bodies = observer.wait_for(lambda bodies: len(bodies) == 2)
    dead = _dead_letters(amqp_url)
    codes = [p.headers["x-instance-service-rejection-code"] for p, _ in dead]
    assert sorted(codes) == ["malformed", "too_large", "unsupported_type"]  # workers race
    assert all(p.headers["x-instance-service-rejection-reason"] for p, _ in dead)
    by_type = Counter(body["type"] for body in bodies)
    assert by_type == {"odoo.instance.command.rejected.v1": 1, "odoo.instance.provisioned.v1": 1}
    rejected = next(b for b in bodies if b["type"].endswith("rejected.v1"))
    assert rejected["data"]["command_id"] == "poison-type"
    assert rejected["data"]["error"]["code"] == "unsupported_type"
    assert fake.calls == {"provision-3": 1}


def test_retryable_failures_wait_the_configured_delays_then_succeed(
    amqp_url: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)
    calls: list[float] = []

    def flaky(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RetryableError("the apiserver said 503")
        assert command.type == PROVISION
        return ProvisionFake()(command, context)

    settings = FAST.model_copy(update={"retry_delays_seconds": (1.0, 2.0)})
    with running_consumer(amqp_url, engine, {PROVISION: flaky}, settings=settings):
        publish(amqp_url, [provision_body(4)], PROVISION)
        observer.wait_for(lambda bodies: len(bodies) == 1)
    assert len(calls) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    # Observed, not assumed: each retry waited at least its configured delay (no jitter here).
    assert gaps[0] >= 1.0
    assert gaps[1] >= 2.0
    assert observer.seen[0][1]["type"] == "odoo.instance.provisioned.v1"


def test_a_handler_sleeping_three_heartbeats_keeps_the_connection(
    amqp_url: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)
    fake = ProvisionFake(sleep=6.5)
    settings = ConsumerSettings(**{**FAST.model_dump(), "handler_budget_seconds": 30})
    with running_consumer(amqp_url, engine, {PROVISION: fake}, settings, heartbeat=2) as runtime:
        publish(amqp_url, [provision_body(5)], PROVISION)
        observer.wait_for(lambda bodies: len(bodies) == 1, timeout=60)
        assert runtime.connections == 1
    assert fake.calls == {"provision-5": 1}


def test_closing_all_connections_during_500_commands_loses_nothing(
    amqp_url: str, amqp_vhost: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)
    fake = ProvisionFake(sleep=0.05)
    dropped = threading.Event()

    def held_until_the_drop(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        # Past the first 100 commands, handlers wait for the drop: it lands mid-stream however
        # long rabbitmqctl takes to start on a loaded machine (seconds, as long as the stream).
        if len(fake.calls) >= 100:
            dropped.wait(timeout=120)
        return fake(command, context)

    layout = default_layout()
    broker = RabbitMQ(layout, credentials.load_or_create(layout))
    messages = [provision_body(i) for i in range(500)]
    settings = FAST.model_copy(update={"workers": 8, "prefetch": 16})
    handlers = {PROVISION: held_until_the_drop}
    with running_consumer(amqp_url, engine, handlers, settings) as runtime:
        publish(amqp_url, messages, PROVISION)
        observer.wait_for(lambda bodies: len(bodies) >= 50, timeout=120)
        broker.ctl("close_all_connections", "-p", amqp_vhost, "test: drop every client")
        dropped.set()
        assert len(_terminal([b for _, b in observer.seen])) < len(messages)
        bodies = observer.wait_for(
            lambda bodies: len(_terminal(bodies)) == len(messages), timeout=300
        )
        assert runtime.connections >= 2
    answers = _terminal(bodies)
    assert set(answers) == {command_id for command_id, _ in messages}
    assert all(len(event_ids) == 1 for event_ids in answers.values())
    assert set(fake.calls) == set(answers)
    assert all(count == 1 for count in fake.calls.values())


def test_a_permanent_failure_is_answered_failed_and_dead_lettered(
    amqp_url: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)

    def refuses(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        raise PermanentError("image_not_allowed", "odoo:17.0 is not on the registry allow-list")

    with running_consumer(amqp_url, engine, {PROVISION: refuses}):
        publish(amqp_url, [provision_body(8)], PROVISION)
        bodies = observer.wait_for(lambda bodies: len(bodies) == 1)
    failed = bodies[0]
    assert failed["type"] == "odoo.instance.command.failed.v1"
    assert failed["data"]["error"] == {
        "code": "image_not_allowed",
        "message": "odoo:17.0 is not on the registry allow-list",
    }
    assert failed["data"]["rolled_back"] is False
    dead = _dead_letters(amqp_url)
    assert [p.headers["x-instance-service-rejection-code"] for p, _ in dead] == [
        "failed:image_not_allowed"
    ]


def test_unexpected_errors_are_retried_then_final(amqp_url: str, engine: Engine) -> None:
    observer = Observer(amqp_url)
    calls: list[str] = []

    def broken(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        calls.append(command.id)
        raise KeyError("a bug")

    settings = FAST.model_copy(update={"max_unexpected_failures": 3})
    with running_consumer(amqp_url, engine, {PROVISION: broken}, settings=settings):
        publish(amqp_url, [provision_body(9)], PROVISION)
        bodies = observer.wait_for(lambda bodies: len(bodies) == 1)
    assert calls == ["provision-9"] * 3
    assert bodies[0]["data"]["error"]["code"] == "unexpected_error"


def test_a_long_operation_continues_later_without_holding_its_message(
    amqp_url: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)
    seen: list[tuple[str | None, float]] = []

    def two_steps(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        seen.append((context.operation_id, time.monotonic()))
        if len(seen) == 1:
            return Continue(step="waiting-for-ready", after_seconds=1.0, result={"job": "init"})
        assert isinstance(command, InstanceCommand)
        return Completed(provisioned(command))

    with running_consumer(amqp_url, engine, {PROVISION: two_steps}):
        publish(amqp_url, [provision_body(10)], PROVISION)
        bodies = observer.wait_for(lambda bodies: len(bodies) == 1)
    assert bodies[0]["type"] == "odoo.instance.provisioned.v1"
    (first_operation, first_at), (second_operation, second_at) = seen
    assert first_operation is not None
    assert first_operation == second_operation  # the continuation resumed the same operation
    assert second_at - first_at >= 1.0
    with Session(engine) as session:
        operation = session.get_one(Operation, first_operation)
    assert operation.step == "waiting-for-ready"
    assert operation.result["job"] == "init"  # beside the command, kept for the watchdog
    assert operation.state == "succeeded"


def test_a_cancelled_consumer_reconnects_and_goes_on(
    amqp_url: str, amqp_vhost: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)
    fake = ProvisionFake()
    with running_consumer(amqp_url, engine, {PROVISION: fake}) as runtime:
        # Deleting a queue makes the broker cancel its consumer (as losing a leader would).
        management_request("DELETE", f"queues/{quote(amqp_vhost)}/{quote(FAST.long_queue)}")
        deadline = time.monotonic() + 30
        while runtime.connections < 2 or not runtime.health.ready:
            assert time.monotonic() < deadline, "the runtime never noticed the cancel"
            time.sleep(0.1)
        publish(amqp_url, [provision_body(11)], PROVISION)
        observer.wait_for(lambda bodies: len(bodies) == 1)
    assert fake.calls == {"provision-11": 1}
