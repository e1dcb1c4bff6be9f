"""Batches through the real broker and store: a burst decided in batches of 50 gets exactly the
answers it gets one delivery at a time (one terminal event per command id, the same types, no
side effect repeated), with duplicates, two commands of one instance, a failure, a rejection
and a malformed message among the successes."""

import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import closing
from typing import Any

import pika
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from consumers.processing import Decision, Delivery, Processor
from consumers.settings import AmqpSettings
from consumers.topology import declare_on_broker
from handlers.results import Completed, HandlerContext, HandlerResult
from messages.commands import AnyCommand, InstanceCommand
from messages.errors import PermanentError
from messages.events import InstanceEventData, RestartedEvent
from messages.publishing import build_command
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
RESTART = "odoo.instance.restart.v1"
PROVISIONS = 60


class _Sizes(Processor):
    """Our own processor, noting the size of each batch it is given."""

    sizes: list[int] = []  # noqa: RUF012 - set per test below
    guard = threading.Lock()

    def process_batch(self, deliveries: Sequence[Delivery]) -> list[Decision]:
        with self.guard:
            self.sizes.append(len(deliveries))
        return super().process_batch(deliveries)


def _restart(index: int, command_id: str) -> tuple[str, bytes]:
    instance_id = str(uuid.UUID(int=index + 1, version=4))
    message = build_command(
        RESTART, {"instance_id": instance_id}, source="/tests", command_id=command_id
    )
    return command_id, message.body


def _answering(wanted: set[str]) -> Callable[[list[dict[str, Any]]], bool]:
    """Whether events answer every command id in `wanted`."""
    return lambda seen: {body["causationid"] for body in seen} >= wanted


def _dead_letters(amqp_url: str) -> list[str]:
    codes: list[str] = []
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        while True:
            method, properties, _ = channel.basic_get("instance-service.dead-letter", auto_ack=True)
            if method is None:
                return sorted(codes)
            codes.append(properties.headers["x-instance-service-rejection-code"])


@pytest.mark.parametrize("batch_size", [1, 50])
def test_a_burst_gets_the_same_answers_in_batches_as_one_at_a_time(
    amqp_url: str, engine: Engine, batch_size: int
) -> None:
    fake = ProvisionFake()
    restarts: list[str] = []

    def provision(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        if command.id == "provision-7":
            raise PermanentError("quota", "no room for it", rolled_back=True)
        return fake(command, context)

    def restart(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        assert isinstance(command, InstanceCommand)
        restarts.append(command.id)
        data = InstanceEventData(instance_id=command.subject)
        return Completed(RestartedEvent.caused_by(command, data))

    provisions = [provision_body(index) for index in range(PROVISIONS)]
    long_burst = list(provisions)
    long_burst.insert(6, provisions[5])  # a duplicate, right behind it
    long_burst.insert(12, ("", b"not json"))  # refused, no id to answer
    restarts_burst = [_restart(index, f"restart-{index}") for index in range(0, PROVISIONS, 2)]
    restarts_burst.insert(2, _restart(2, "restart-2-again"))  # the same instance, right behind
    restarts_burst.insert(5, _restart(999, "restart-unknown"))  # no such instance: rejected
    expected: dict[str, str] = {
        command_id: "odoo.instance.provisioned.v1" for command_id, _ in provisions
    }
    expected["provision-7"] = "odoo.instance.command.failed.v1"
    expected |= {c: "odoo.instance.restarted.v1" for c, _ in restarts_burst}
    expected["restart-unknown"] = "odoo.instance.command.rejected.v1"

    # One worker and a prefetch above the burst, which waits in its queue before the consumer
    # starts: while the first delivery is decided the rest gather, taken in batches of at most
    # `batch_size`. Provisions (long queue) first, then restarts of them (quick queue).
    settings = FAST.model_copy(update={"workers": 1, "prefetch": 200, "batch_size": batch_size})
    declare_on_broker(AmqpSettings(url=SecretStr(amqp_url)), settings)
    observer = Observer(amqp_url)
    handlers = {PROVISION: provision, RESTART: restart}
    _Sizes.sizes = []
    for burst, routing_key in [(long_burst, PROVISION), (restarts_burst, RESTART)]:
        publish(amqp_url, burst, routing_key)
        wanted = {command_id for command_id, _ in burst if command_id}
        with running_consumer(amqp_url, engine, handlers, settings, processor_type=_Sizes):
            observer.wait_for(_answering(wanted), timeout=120)
    observer.wait_for(lambda seen: True)  # whatever else came meanwhile

    answers: dict[str, dict[str, Any]] = {}
    for body in [b for _, b in observer.seen]:
        earlier = answers.setdefault(body["causationid"], body)
        assert earlier["id"] == body["id"], f"two answers to {body['causationid']}"
    assert {cause: body["type"] for cause, body in answers.items()} == expected
    assert fake.calls == {c: 1 for c, _ in provisions if c != "provision-7"}
    assert sorted(restarts) == sorted(
        c for c, kind in expected.items() if kind == "odoo.instance.restarted.v1"
    )
    assert restarts.index("restart-2") < restarts.index("restart-2-again")
    assert _dead_letters(amqp_url) == [
        "failed:quota",
        "malformed",
        "unknown_instance",
    ]
    if batch_size == 1:
        assert set(_Sizes.sizes) == {1}
    else:
        assert max(_Sizes.sizes) > 1  # batches formed
        assert max(_Sizes.sizes) <= batch_size
