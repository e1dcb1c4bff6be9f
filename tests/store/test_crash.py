"""A worker killed between committing an outcome and publishing it loses nothing: after the
restart the relay publishes the event to the real RabbitMQ, once, under its own id."""

import signal
import subprocess
import sys
from contextlib import closing

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy.engine import Engine

from consumers.relay import OutboxRelay
from store.outbox import OutboxRelayStore

pytestmark = pytest.mark.rabbitmq


def _relay_once(relay: OutboxRelayStore, channel: BlockingChannel) -> int:
    """The consumer's own relay, as the restarted consumer runs it."""
    return OutboxRelay(relay).publish_pending(channel, until_empty=True)


def test_killed_after_commit_the_event_is_published_exactly_once_after_restart(
    engine: Engine, database_url: str, amqp_url: str
) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.store.crash_worker", database_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        event_id = worker.stdout.readline().strip()
        assert event_id, "the worker died before committing"
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        worker.kill()
        worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()

    relay = OutboxRelayStore(engine, relay_id="after-restart")
    assert relay.backlog() == 2  # provisioned and the unpublished result of the stop

    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.exchange_declare("instance.events", "topic", durable=True)
        channel.queue_declare("observer", durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind("observer", "instance.events", "#")

        assert _relay_once(relay, channel) == 2
        assert _relay_once(relay, channel) == 0
        assert _relay_once(OutboxRelayStore(engine, relay_id="another"), channel) == 0

        seen = []
        while True:
            method, properties, _body = channel.basic_get("observer", auto_ack=True)
            if method is None:
                break
            seen.append((properties.message_id, method.routing_key))
    assert seen.count((event_id, "odoo.instance.stopped.v1")) == 1
    assert len(seen) == 2
    assert relay.backlog() == 0
