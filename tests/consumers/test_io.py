"""The connection that does not wait per message, against the real RabbitMQ: events leave as
their command commits (not on the relay's timer), acknowledgements go several to a frame and
the broker takes them, and a retry is acknowledged only once the broker has confirmed it."""

import threading
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

import pika
import pytest
from sqlalchemy.engine import Engine

from consumers.topology import served_queues
from handlers.results import HandlerContext, HandlerResult
from messages.commands import AnyCommand
from messages.errors import RetryableError
from tests.consumers.harness import (
    FAST,
    Observer,
    ProvisionFake,
    provision_body,
    publish,
    running_consumer,
)

pytestmark = pytest.mark.rabbitmq
PROVISION = "odoo.instance.provision.v1"


def _depth(amqp_url: str, queue: str) -> int:
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)


def _dead_letters(amqp_url: str) -> list[Any]:
    found: list[Any] = []
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        while True:
            method, properties, _body = channel.basic_get(FAST.dead_letter_queue, auto_ack=True)
            if method is None:
                return found
            found.append(properties)


def _count_is(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda bodies: len(bodies) == count


def test_events_leave_as_their_command_commits_not_on_the_relays_timer(
    amqp_url: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)
    fake = ProvisionFake()
    # The relay's timer turns once a minute: only the kick of the worker that recorded the
    # outcome can have published these events within the wait below.
    settings = FAST.model_copy(update={"relay_interval_seconds": 60.0})
    with running_consumer(amqp_url, engine, {PROVISION: fake}, settings):
        ready = time.monotonic()
        for index in range(3):
            publish(amqp_url, [provision_body(index)], PROVISION)
            observer.wait_for(_count_is(index + 1), timeout=20)
        assert time.monotonic() - ready < settings.relay_interval_seconds
    assert [body["causationid"] for _, body in observer.seen] == [
        "provision-0",
        "provision-1",
        "provision-2",
    ]


def test_acknowledgements_settled_together_go_in_one_frame_and_the_broker_takes_them(
    amqp_url: str, engine: Engine
) -> None:
    observer = Observer(amqp_url)
    started = threading.Semaphore(0)
    gate = threading.Event()
    fake = ProvisionFake()

    def gated(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        started.release()
        assert gate.wait(30)
        return fake(command, context)

    settings = FAST.model_copy(update={"workers": 4, "prefetch": 8})
    with running_consumer(amqp_url, engine, {PROVISION: gated}, settings) as runtime:
        publish(amqp_url, [provision_body(i) for i in range(4)], PROVISION)
        for _ in range(4):
            assert started.acquire(timeout=30)
        # Hold the I/O thread while the four finish, so their settlements meet in one turn.
        held = threading.Event()

        def hold() -> None:
            held.set()
            time.sleep(2.0)

        link = runtime.link
        assert link is not None
        assert link.call_soon_threadsafe(hold)
        assert held.wait(10)
        gate.set()
        observer.wait_for(lambda bodies: len(bodies) == 4)
        deadline = time.monotonic() + 10
        while runtime.acks.deliveries < 4:
            assert time.monotonic() < deadline, "the deliveries were never settled"
            time.sleep(0.05)
        assert runtime.acks.deliveries == 4
        assert runtime.acks.frames < runtime.acks.deliveries  # a multiple ack carried several
        assert runtime.connections == 1  # the broker took every frame: no channel error
    # Stopped: whatever the broker had not taken as acknowledged would be ready again now.
    long_queue = FAST.long_queue
    assert _depth(amqp_url, long_queue) == 0
    assert sorted(fake.calls) == [f"provision-{i}" for i in range(4)]
    assert set(fake.calls.values()) == {1}


@pytest.mark.parametrize("delay_queue_becomes", ["full", "missing"])
def test_a_retry_the_broker_does_not_take_leaves_its_delivery_unacknowledged_and_rejected(
    amqp_url: str, engine: Engine, delay_queue_becomes: str
) -> None:
    calls: list[str] = []

    def busy(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        calls.append(command.id)
        raise RetryableError("the apiserver said 503")

    long_queue = next(q for q in served_queues(FAST) if q.name == FAST.long_queue)
    first_delay = long_queue.delay_queue(0)
    with running_consumer(amqp_url, engine, {PROVISION: busy}) as runtime:
        # After the consumer declared it: a full queue that refuses publishes (nack), or none
        # at all (the mandatory publish comes back unroutable).
        with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
            channel = connection.channel()
            channel.queue_delete(first_delay)
            if delay_queue_becomes == "full":
                channel.queue_declare(
                    first_delay,
                    durable=True,
                    arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
                )
        publish(amqp_url, [provision_body(21)], PROVISION)
        deadline = time.monotonic() + 30
        while not (dead := _dead_letters(amqp_url)):
            assert time.monotonic() < deadline, "the delivery was never dead-lettered"
            time.sleep(0.2)
        assert runtime.connections == 1
    # Had it been acknowledged before the broker answered, it would be gone; rejected, the
    # work queue dead-lettered it itself.
    assert [properties.message_id for properties in dead] == ["provision-21"]
    assert dead[0].headers["x-death"][0]["reason"] == "rejected"
    assert calls == ["provision-21"]
    assert _depth(amqp_url, FAST.long_queue) == 0
