"""A consumer running in a thread of the test, test handlers, and an observer of instance.events.

The handlers are fakes of our own port (handlers.results.Handler); the broker, the AMQP wire and
the database are real.
"""

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from consumers.health import Health
from consumers.parking import ParkingLot
from consumers.processing import Processor
from consumers.relay import OutboxRelay
from consumers.runtime import ConsumerRuntime
from consumers.settings import AmqpSettings, ConsumerSettings
from handlers.results import Completed, Handler, HandlerContext, HandlerResult
from messages.commands import AnyCommand, InstanceCommand
from messages.events import ProvisionedData, ProvisionedEvent, SecretReference
from messages.publishing import build_command
from messages.settings import ContractSettings
from store.admission import Archives
from store.ledger import Ledger
from store.outbox import OutboxRelayStore
from tests.catalog import MACHINE, registry_of

FAST = ConsumerSettings(
    health_port=0,
    retry_delays_seconds=(0.5, 1.0),
    retry_jitter=0.0,
    relay_interval_seconds=0.1,
    shutdown_grace_seconds=20,
)


@dataclass
class ProvisionFake:
    """Answers a provision at once (or after `sleep`), counting side effects per command id."""

    sleep: float = 0.0
    calls: dict[str, int] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, command: AnyCommand, context: HandlerContext) -> HandlerResult:
        """Count, maybe wait, succeed."""
        assert isinstance(command, InstanceCommand)
        with self.guard:
            self.calls[command.id] = self.calls.get(command.id, 0) + 1
        time.sleep(self.sleep)
        return Completed(provisioned(command))


def provisioned(command: InstanceCommand) -> ProvisionedEvent:
    """The success event of a provision."""
    return ProvisionedEvent.caused_by(
        command,
        ProvisionedData(
            instance_id=command.subject,
            url="https://x.example",
            internal_url="http://odoo.t.svc.cluster.local:8069",
            odoo_version="17.0",
            credentials_secret=SecretReference(namespace="t", name="odoo-x"),
        ),
    )


def provision_body(index: int, command_id: str | None = None) -> tuple[str, bytes]:
    """A valid provision for a new instance; returns (command id, body)."""
    instance_id = str(uuid.UUID(int=index + 1, version=4))
    message = build_command(
        "odoo.instance.provision.v1",
        {
            "instance_id": instance_id,
            "customer_id": "c1",
            "subdomain": f"tenant-{index}",
            "odoo_version": "17.0",
            "plan": {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 5},
            "admin_email": "it@x.example",
        },
        source="/tests",
        command_id=command_id or f"provision-{index}",
    )
    return message.properties.message_id or "", message.body


def publish(amqp_url: str, bodies: list[tuple[str, bytes]], routing_key: str) -> None:
    """Publish commands to instance.commands with the contract's properties and confirms."""
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for message_id, body in bodies:
            channel.basic_publish(
                "instance.commands",
                routing_key,
                body,
                pika.BasicProperties(
                    content_type="application/cloudevents+json",
                    delivery_mode=2,
                    message_id=message_id or None,
                ),
                mandatory=True,
            )


class Observer:
    """A durable queue bound to every event; survives connection resets."""

    def __init__(self, amqp_url: str, queue: str = "test.observer") -> None:
        self.amqp_url = amqp_url
        self.queue = queue
        self.seen: list[tuple[Any, dict[str, Any]]] = []
        with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
            channel = connection.channel()
            channel.exchange_declare("instance.events", "topic", durable=True)
            channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
            channel.queue_bind(queue, "instance.events", "#")

    def drain(self) -> None:
        """Collect whatever waits in the queue."""
        try:
            with closing(pika.BlockingConnection(pika.URLParameters(self.amqp_url))) as conn:
                channel = conn.channel()
                while True:
                    method, properties, body = channel.basic_get(self.queue, auto_ack=True)
                    if method is None:
                        return
                    self.seen.append((properties, json.loads(body)))
        except pika.exceptions.AMQPConnectionError:
            return  # the broker is closing connections; try again on the next call

    def wait_for(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60
    ) -> list[dict[str, Any]]:
        """Drain until `done(bodies)` holds; return the bodies."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            bodies = [body for _, body in self.seen]
            if done(bodies):
                return bodies
            if time.monotonic() > deadline:
                raise TimeoutError(f"events so far: {len(bodies)}")
            time.sleep(0.2)


@contextmanager
def running_consumer(
    amqp_url: str,
    engine: Engine,
    handlers: Mapping[str, Handler],
    settings: ConsumerSettings = FAST,
    heartbeat: int = 30,
    parking: ParkingLot | None = None,
    processor_type: type[Processor] = Processor,
    archives: Archives | None = None,
    contract: ContractSettings | None = None,
    max_domains: int | None = None,
) -> Iterator[ConsumerRuntime]:
    """A consumer serving in a thread until the block ends (parking waiting deliveries in
    `parking`, whose timer runs as long as the consumer; admission looking for an import's
    archive in `archives`, allowing `max_domains` customer domains per instance)."""
    amqp = AmqpSettings(url=SecretStr(amqp_url), heartbeat_seconds=heartbeat)
    processor = processor_type(
        Ledger(engine, MACHINE, archives=archives, max_domains=max_domains),
        registry_of(handlers),
        settings,
        contract or ContractSettings(),
        parking=parking,
    )
    health = Health()
    runtime = ConsumerRuntime(
        amqp, settings, processor, OutboxRelay(OutboxRelayStore(engine)), health, parking
    )
    thread = threading.Thread(target=runtime.serve, name="consumer", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not health.ready:
        assert time.monotonic() < deadline, "the consumer never became ready"
        time.sleep(0.05)
    try:
        yield runtime
    finally:
        runtime.stopping.set()
        thread.join(60)
        assert not thread.is_alive(), "the consumer did not stop"
