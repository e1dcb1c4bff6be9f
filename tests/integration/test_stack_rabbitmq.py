"""The local RabbitMQ is real: a persistent message in a quorum queue outlives a broker restart, and
the stack sets any password it may hold on the broker's users."""

import json
import uuid
from contextlib import closing

import pika
import pika.exceptions
import pytest

from devstack import credentials
from devstack.httpcheck import get
from devstack.layout import default_layout
from devstack.rabbitmq import RabbitMQ

pytestmark = pytest.mark.rabbitmq


def _connect(url: str) -> pika.BlockingConnection:
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 30
    parameters.retry_delay = 1
    return pika.BlockingConnection(parameters)


def _restart_broker() -> None:
    layout = default_layout()
    broker = RabbitMQ(layout, credentials.load_or_create(layout))
    broker.stop()
    broker.start()


def _whoami(password: str, user: str) -> tuple[int, str]:
    port = default_layout().ports.rabbitmq_management
    return get(f"http://127.0.0.1:{port}/api/whoami", basic_auth=(user, password))


def test_a_password_starting_with_a_dash_is_set_not_read_as_options() -> None:
    # An older stack's credentials file may hold such passwords (they were URL-safe base64).
    layout = default_layout()
    broker = RabbitMQ(layout, credentials.load_or_create(layout))
    user = f"dash-{uuid.uuid4().hex[:8]}"
    first, second = f"-OmfL{uuid.uuid4().hex}", f"--{uuid.uuid4().hex}"
    try:
        broker.ensure_user(user, first, "monitoring", exists=False)
        assert _whoami(first, user)[0] == 200
        broker.ensure_user(user, second, "monitoring", exists=True)
        status, body = _whoami(second, user)
        assert status == 200
        assert json.loads(body)["name"] == user
        assert _whoami(first, user)[0] == 401
    finally:
        broker.ctl("delete_user", "--", user)


def test_persistent_message_in_quorum_queue_survives_broker_restart(amqp_url: str) -> None:
    body = f"smoke-{uuid.uuid4()}".encode()
    message_id = str(uuid.uuid4())
    with closing(_connect(amqp_url)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("smoke.quorum", durable=True, arguments={"x-queue-type": "quorum"})
        # A transient queue proves the restart really happened: it must be gone afterwards.
        channel.queue_declare("smoke.transient", durable=False)
        channel.basic_publish(
            "",
            "smoke.quorum",
            body,
            pika.BasicProperties(delivery_mode=2, message_id=message_id),
            mandatory=True,
        )

    _restart_broker()

    with closing(_connect(amqp_url)) as connection:
        channel = connection.channel()
        method, properties, received = channel.basic_get("smoke.quorum", auto_ack=False)
        assert method is not None, "the persistent message was lost"
        assert received == body
        assert properties.message_id == message_id
        channel.basic_ack(method.delivery_tag)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
            channel.queue_declare("smoke.transient", passive=True)
        assert gone.value.reply_code == 404
