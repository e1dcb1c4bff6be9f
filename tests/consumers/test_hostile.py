"""A hostile publisher, through the real RabbitMQ to a running consumer (issue 16, items 1-4).

Every message is published to `instance.commands` the way a buggy or malicious sender would:
raw bytes, forged headers, lying routing keys. The consumer must answer or dead-letter each one
exactly once, keep answering valid commands promptly, never reconnect and never leave anything
cycling in its queues.
"""

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pika
import pika.frame
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from consumers.health import Health
from consumers.processing import Decision, Delivery, Processor
from consumers.relay import OutboxRelay
from consumers.runtime import ConsumerRuntime
from consumers.settings import AmqpSettings
from consumers.topology import declare, served_queues
from handlers.results import Completed, Handler, HandlerContext, HandlerResult
from messages.commands import AnyCommand, InstanceCommand
from messages.envelope import MAX_BODY_BYTES
from messages.events import Event, InstanceEventData, RestartedEvent, SuspendedEvent
from messages.publishing import build_command
from messages.settings import ContractSettings
from store.ledger import Ledger
from store.outbox import OutboxRelayStore
from tests.catalog import MACHINE, registry_of
from tests.consumers.harness import FAST, ProvisionFake, provision_body, running_consumer
from tests.stack import management_request, quote

pytestmark = pytest.mark.rabbitmq
PROVISION = "odoo.instance.provision.v1"
DEAD_LETTERS = "instance-service.dead-letter"
CODE = "x-instance-service-rejection-code"
ANSWER_WITHIN_SECONDS = 5.0
FRAME_MAX = 131_072  # RabbitMQ's default, which pika accepts


@dataclass(frozen=True)
class Sent:
    """One message as published, and what must become of it."""

    key: str
    """Its AMQP message_id: how its dead letter is found (bodies may have no readable id)."""
    routing_key: str
    body: bytes
    headers: dict[str, Any]
    content_type: str | None
    answer: str | None
    """The terminal event's type (suffix) or rejection code expected for its id; None: none."""
    dead_code: str | None
    """The dead-letter code expected; None: not dead-lettered."""
    answered_id: str | None = None
    """The command id the answer carries (default: the key)."""
    message_id: str | None = None
    """The AMQP message_id, when not the key."""
    via_management: bool = False
    """Published through the management API: the only way to send a float header (pika
    cannot encode one; other clients can)."""

    @property
    def amqp_id(self) -> str:
        """The message_id it is published with, by which its dead letter is found."""
        return self.message_id or self.key


def _document(index: int, command_id: str) -> dict[str, Any]:
    _, body = provision_body(1000 + index, "placeholder")
    return {**json.loads(body), "id": command_id}


def _encode(document: object) -> bytes:
    return json.dumps(document).encode()


def _hostile() -> list[Sent]:
    """At least 30 hostile messages, each with its expected fate."""
    sent: list[Sent] = []

    def add(
        key: str,
        body: bytes,
        *,
        answer: str | None,
        dead: str | None,
        routing_key: str = PROVISION,
        headers: dict[str, Any] | None = None,
        content_type: str | None = "application/cloudevents+json",
        answered_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        floats = any(isinstance(v, float) for v in (headers or {}).values())
        sent.append(
            Sent(
                key,
                routing_key,
                body,
                headers or {},
                content_type,
                answer,
                dead,
                answered_id,
                message_id,
                via_management=floats,
            )
        )

    def rejected(key: str, code: str, document: dict[str, Any], **options: Any) -> None:
        add(key, _encode(document), answer=code, dead=code, **options)

    n = iter(range(100))
    # 1. 200 KB of nested arrays, no traceparent header: answered by its id, once.
    deep = b'{"id": "h-deep", "type": "odoo.instance.provision.v1", "data": '
    add(
        "h-deep",
        deep + b"[" * 100_000 + b"]" * 100_000 + b"}",
        answer="malformed",
        dead="malformed",
    )
    add("h-deep-anon", b"[" * 120_000 + b"]" * 120_000, answer=None, dead="malformed")
    # 2. A type nobody serves, under its own routing key; a type that is not its routing key.
    explode = {**_document(next(n), "h-explode"), "type": "odoo.instance.explode.v1"}
    rejected("h-explode", "unsupported_type", explode, routing_key="odoo.instance.explode.v1")
    rejected(
        "h-lying-key",
        "invalid_data",
        _document(next(n), "h-lying-key"),
        routing_key="odoo.instance.stop.v1",
    )
    odd = {**_document(next(n), "h-odd-key"), "type": "odoo.x"}
    rejected("h-odd-key", "unsupported_type", odd, routing_key="odoo.x")
    add("h-garbage-odoo", b"{", answer=None, dead="malformed", routing_key="odoo.nothing.at.all")
    # 3. Forged service headers on valid commands: ignored, the command runs as sent.
    for header, value in [
        ("x-instance-service-not-before", 1e18),
        ("x-instance-service-not-before-ms", 10**18),
        ("x-instance-service-retries", 10**6),
        ("x-instance-service-unexpected-failures", 4),
        ("x-instance-service-busy", 2.5),
        ("x-delivery-count", 49),
        ("x-death", [{"queue": "instance-service.commands.long.retry.1s", "reason": "expired"}]),
    ]:
        key = f"h-forged-{header.removeprefix('x-')}"
        add(
            key,
            _encode(_document(next(n), key)),
            answer="provisioned.v1",
            dead=None,
            headers={header: value},
        )
    # ... and on a refused one, whose dead letter must not copy them.
    bad = _document(next(n), "h-forged-refused")
    bad["data"]["plan"]["cpu_millicores"] = 1
    rejected(
        "h-forged-refused", "invalid_data", bad, headers={"x-instance-service-not-before": 1e18}
    )
    # Headers that fill a frame: fine once, too large if copied onto a retry or dead letter.
    big = {"x-padding": "p" * _frame_room()}
    key = "h-big-headers-valid"
    add(key, _encode(_document(next(n), key)), answer="provisioned.v1", dead=None, headers=big)
    bad = _document(next(n), "h-big-headers-refused")
    bad["data"]["subdomain"] = "NOT A LABEL"
    rejected("h-big-headers-refused", "invalid_data", bad, headers=big)
    # 4. A restart dated ten years ahead: refused, and its time never becomes the instance's.
    future = _document(next(n), "h-future")
    future["time"] = (datetime.now(UTC) + timedelta(days=3650)).isoformat()
    rejected("h-future", "invalid_data", future)
    # Wrong content types, binary and empty bodies, top-level non-objects.
    rejected(
        "h-text-plain", "malformed", _document(next(n), "h-text-plain"), content_type="text/plain"
    )
    add("h-binary", bytes(range(256)) * 8, answer=None, dead="malformed")
    add("h-empty", b"", answer=None, dead="malformed")
    add("h-array", b"[1, 2, 3]", answer=None, dead="malformed")
    add("h-bad-utf8", b'{"id": "h-bad-utf8", "x": "\xff"}', answer="malformed", dead="malformed")
    add("h-nan", b'{"id": "h-nan", "x": NaN}', answer="malformed", dead="malformed")
    surrogate = b'{"id": "h-surrogate", "type": "odoo.instance.provision.v1", "x": "\\ud800"}'
    add("h-surrogate", surrogate, answer="malformed", dead="malformed")
    add(
        "h-duplicate-keys",
        b'{"id": "h-duplicate-keys", "id": "other"}',
        answer="malformed",
        dead="malformed",
    )
    # Sizes.
    large = _document(next(n), "h-too-large")
    large["data"]["language"] = "x" * MAX_BODY_BYTES
    rejected("h-too-large", "too_large", large)
    many = _document(next(n), "h-many-fields")
    many.update({f"field{i}": i for i in range(5000)})
    rejected("h-many-fields", "invalid_data", many)
    # Ids and strings.
    long_id = "i" * 129
    add("h-long-id", _encode(_document(next(n), long_id)), answer=None, dead="invalid_data")
    nul = _document(next(n), "h-nul")
    nul["data"]["customer_id"] = "a\u0000b"
    rejected("h-nul", "invalid_data", nul)
    unknown = _document(next(n), "h-unknown-field")
    unknown["data"]["superuser"] = True
    rejected("h-unknown-field", "invalid_data", unknown)
    as_string = _document(next(n), "h-number-as-string")
    as_string["data"]["plan"]["memory_mib"] = "1024"
    rejected("h-number-as-string", "invalid_data", as_string)
    rejected(
        "h-other-message-id",
        "invalid_data",
        _document(next(n), "h-other-message-id"),
        message_id="not-the-body-id",
    )
    no_type = _document(next(n), "h-null-type")
    no_type["type"] = None
    rejected("h-null-type", "invalid_data", no_type)
    other_subject = _document(next(n), "h-subject")
    other_subject["subject"] = str(uuid.uuid4())
    rejected("h-subject", "invalid_data", other_subject)
    return sent


def _frame_room() -> int:
    """A header this long fills the header frame to just under the broker's frame size: it
    passes once, but copied onto a retry or dead letter with a reason added, it would not."""
    properties = pika.BasicProperties(
        content_type="application/cloudevents+json",
        delivery_mode=2,
        message_id="h-big-headers-refused",
        headers={"x-padding": ""},
    )
    frame = pika.frame.Header(1, 2000, properties).marshal()
    return FRAME_MAX - len(frame) - 64


def _valid(count: int) -> list[Sent]:
    found = []
    for index in range(count):
        command_id, body = provision_body(index, f"valid-{index}")
        found.append(
            Sent(
                command_id,
                PROVISION,
                body,
                {},
                "application/cloudevents+json",
                "provisioned.v1",
                None,
            )
        )
    return found


def _publish(channel: Any, vhost: str, message: Sent) -> None:
    message_id = message.amqp_id
    if message.via_management:
        status = management_request(
            "POST",
            f"exchanges/{quote(vhost)}/instance.commands/publish",
            {
                "routing_key": message.routing_key,
                "payload": message.body.decode(),
                "payload_encoding": "string",
                "properties": {
                    "content_type": message.content_type,
                    "delivery_mode": 2,
                    "message_id": message_id,
                    "headers": message.headers,
                },
            },
        )
        assert status == 200
        return
    channel.basic_publish(
        "instance.commands",
        message.routing_key,
        message.body,
        pika.BasicProperties(
            content_type=message.content_type,
            delivery_mode=2,
            message_id=message_id,
            headers=message.headers or None,
        ),
        mandatory=True,
    )


class Arrivals:
    """Events and dead letters as they arrive, with the monotonic time of their arrival."""

    def __init__(self, amqp_url: str) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.dead: list[tuple[float, Any, bytes]] = []
        self._stop = threading.Event()
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        channel.exchange_declare("instance.events", "topic", durable=True)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "instance.events", "#")
        self._connection, self._channel, self._queue = connection, channel, queue

    def collect(self, seconds: float) -> None:
        """Take what arrives for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            method, _, body = self._channel.basic_get(self._queue, auto_ack=True)
            if method is not None:
                self.events.append((time.monotonic(), json.loads(body)))
                continue
            method, properties, body = self._channel.basic_get(DEAD_LETTERS, auto_ack=True)
            if method is not None:
                self.dead.append((time.monotonic(), properties, body))
                continue
            self._connection.sleep(0.05)

    def until(self, done: Callable[[], bool], timeout: float) -> None:
        """Collect until `done()` or the timeout."""
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            self.collect(0.2)

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


@pytest.fixture
def arrivals(amqp_url: str) -> Iterator[Arrivals]:
    """Start collecting before anything is published."""
    found = Arrivals(amqp_url)
    yield found
    found.close()


def _queue_depths(amqp_url: str) -> dict[str, int]:
    """Ready messages in every queue of the service but the dead letters."""
    depths = {}
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        for queue in served_queues(FAST):
            for name in (
                queue.name,
                *queue.delay_queues,
            ):
                depths[name] = channel.queue_declare(name, passive=True).method.message_count
    return depths


def test_a_hostile_publisher_gets_one_answer_each_and_valid_commands_go_on(
    amqp_url: str, amqp_vhost: str, engine: Engine, arrivals: Arrivals
) -> None:
    hostile, valid = _hostile(), _valid(30)
    assert len(hostile) >= 30
    fake = ProvisionFake()
    published: dict[str, float] = {}
    with running_consumer(amqp_url, engine, {PROVISION: fake}) as runtime:
        with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            for index in range(max(len(hostile), len(valid))):
                for message in hostile[index : index + 1] + valid[index : index + 1]:
                    _publish(channel, amqp_vhost, message)
                    published[message.key] = time.monotonic()
        everything = hostile + valid
        expected_events = sum(1 for m in everything if m.answer is not None)
        expected_dead = sum(1 for m in everything if m.dead_code is not None)
        arrivals.until(
            lambda: len(arrivals.events) >= expected_events and len(arrivals.dead) >= expected_dead,
            timeout=90,
        )
        arrivals.collect(3.0)  # anything extra (a second answer, a late dead letter) shows now
        # Nothing cycles: every queue stays empty across more than the longest retry delay.
        for _ in range(3):
            assert set(_queue_depths(amqp_url).values()) == {0}
            time.sleep(1.0)
        assert runtime.connections == 1, "the consumer reconnected"
        assert runtime.health.ready

    answers: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for arrived, event in arrivals.events:
        answers.setdefault(event["causationid"], []).append((arrived, event))
    dead = Counter(str(properties.message_id) for _, properties, _ in arrivals.dead)
    by_id = {m.amqp_id: m for m in everything}
    dead_codes = {str(p.message_id): p.headers[CODE] for _, p, _ in arrivals.dead}

    problems = []
    for message in everything:
        answered_id = message.key if message.answered_id is None else message.answered_id
        got = answers.get(answered_id, [])
        if message.answer is None:
            if got:
                problems.append(f"{message.key}: answered {got}, expected no answer")
        elif len(got) != 1:
            problems.append(f"{message.key}: {len(got)} answers")
        else:
            arrived, event = got[0]
            data = event["data"]
            outcome = data["error"]["code"] if "error" in data else event["type"]
            if not outcome.endswith(message.answer):
                problems.append(f"{message.key}: answered {outcome}, expected {message.answer}")
            if message in valid and arrived - published[message.key] > ANSWER_WITHIN_SECONDS:
                problems.append(
                    f"{message.key}: answered after {arrived - published[message.key]:.1f} s"
                )
        expected, amqp_id = (0 if message.dead_code is None else 1), message.amqp_id
        if dead[amqp_id] != expected:
            problems.append(f"{message.key}: dead-lettered {dead[amqp_id]} times")
        elif message.dead_code is not None and dead_codes[amqp_id] != message.dead_code:
            problems.append(f"{message.key}: dead-letter code {dead_codes[amqp_id]}")
    problems += [f"unexpected dead letter {key}" for key in dead if key not in by_id]
    assert problems == []
    for _, properties, _ in arrivals.dead:
        # Only the trace context and the service's own reasons: nothing of the sender's copied
        # (the broker adds its delivery count when the test reads the dead letter).
        assert set(properties.headers) - {"x-delivery-count"} <= {
            "traceparent",
            "tracestate",
            CODE,
            "x-instance-service-rejection-reason",
        }
    forged = [m.key for m in hostile if m.key.startswith(("h-forged-", "h-big-headers-valid"))]
    assert all(fake.calls.get(key) == 1 for key in forged if key != "h-forged-refused")
    print(
        f"\nhostile {len(hostile)}, valid {len(valid)}: events {len(arrivals.events)}, "
        f"dead letters {len(arrivals.dead)}, connections {runtime.connections}"
    )


class _Exploding(Processor):
    """Our own processor, made to raise for one message id as a bug would."""

    def process_batch(self, deliveries: Sequence[Delivery]) -> list[Decision]:
        if any(delivery.properties.message_id == "boom" for delivery in deliveries):
            raise RuntimeError("a bug nobody foresaw")
        return super().process_batch(deliveries)


def test_an_exception_that_escapes_the_decision_ends_dead_lettered(
    amqp_url: str, engine: Engine, arrivals: Arrivals
) -> None:
    settings = FAST.model_copy(update={"max_unexpected_failures": 3})
    processor = _Exploding(
        Ledger(engine, MACHINE),
        registry_of({PROVISION: ProvisionFake()}),
        settings,
        ContractSettings(),
    )
    health = Health()
    runtime = ConsumerRuntime(
        AmqpSettings(url=SecretStr(amqp_url)),
        settings,
        processor,
        OutboxRelay(OutboxRelayStore(engine)),
        health,
    )
    thread = threading.Thread(target=runtime.serve, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not health.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
            channel = connection.channel()
            channel.confirm_delivery()
            _, body = provision_body(1, "boom")
            channel.basic_publish(
                "instance.commands",
                PROVISION,
                body,
                pika.BasicProperties(
                    content_type="application/cloudevents+json", message_id="boom"
                ),
                mandatory=True,
            )
            _, body = provision_body(2, "after-boom")
            channel.basic_publish(
                "instance.commands", PROVISION, body, pika.BasicProperties(message_id="after-boom")
            )
        arrivals.until(lambda: len(arrivals.dead) >= 1 and len(arrivals.events) >= 1, 30)
        arrivals.collect(3.0)
        assert set(_queue_depths(amqp_url).values()) == {0}
        assert runtime.connections == 1
    finally:
        runtime.stopping.set()
        thread.join(60)
    assert [(p.message_id, p.headers[CODE]) for _, p, _ in arrivals.dead] == [
        ("boom", "processing_failed")
    ]
    assert [e["causationid"] for _, e in arrivals.events] == ["after-boom"]


def _answers_with(event: type[Event]) -> Handler:
    """A handler of our own port that succeeds at once with `event`."""

    def handle(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        assert isinstance(command, InstanceCommand)
        return Completed(event.caused_by(command, InstanceEventData(instance_id=command.subject)))

    return handle


def test_a_command_from_the_future_does_not_lock_out_billing(
    amqp_url: str, engine: Engine, arrivals: Arrivals
) -> None:
    handlers = {
        PROVISION: ProvisionFake(),
        "odoo.instance.restart.v1": _answers_with(RestartedEvent),
        "odoo.instance.suspend.v1": _answers_with(SuspendedEvent),
    }
    command_id, body = provision_body(5, "future-provision")
    instance_id = json.loads(body)["subject"]
    now = datetime.now(UTC)

    def command(command_type: str, command_id: str, at: datetime, **data: Any) -> bytes:
        message = build_command(
            command_type,
            {"instance_id": instance_id, **data},
            source="/tests",
            command_id=command_id,
            time=at,
        )
        return message.body

    with (
        running_consumer(amqp_url, engine, handlers),
        closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection,
    ):
        channel = connection.channel()
        channel.confirm_delivery()

        def send(routing_key: str, message_id: str, payload: bytes) -> None:
            sent = Sent(message_id, routing_key, payload, {}, None, None, None)
            _publish(channel, "", sent)
            arrivals.until(
                lambda: any(e["causationid"] == message_id for _, e in arrivals.events), 30
            )

        send(PROVISION, command_id, body)
        ten_years = now + timedelta(days=3650)
        send(
            "odoo.instance.restart.v1",
            "future-restart",
            command("odoo.instance.restart.v1", "future-restart", ten_years),
        )
        send(
            "odoo.instance.suspend.v1",
            "billing-suspend",
            command(
                "odoo.instance.suspend.v1",
                "billing-suspend",
                now + timedelta(seconds=1),
                reason="payment_failed",
            ),
        )
    answers = {e["causationid"]: e for _, e in arrivals.events}
    assert answers["future-restart"]["type"] == "odoo.instance.command.rejected.v1"
    assert answers["future-restart"]["data"]["error"]["code"] == "invalid_data"
    assert answers["billing-suspend"]["type"] == "odoo.instance.suspended.v1"
    stored = Ledger(engine, MACHINE).instance(instance_id)
    assert stored is not None
    assert stored.last_command_time < now + timedelta(seconds=300)


def test_an_exchange_declared_before_the_alternate_exchange_is_kept_with_a_warning(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A broker where an older version declared instance.commands: the argument cannot be
    # added, the consumer says how to set it by policy and declares everything else.
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        channel.exchange_declare("instance.commands", "topic", durable=True)
        with caplog.at_level("WARNING", logger="consumers.topology"):
            declare(channel, FAST)
        assert channel.is_open
        for queue in served_queues(FAST):
            channel.queue_declare(queue.name, passive=True)
    warned = [r for r in caplog.records if "without an alternate exchange" in r.getMessage()]
    assert len(warned) == 1
    assert "rabbitmqctl set_policy" in warned[0].fix  # type: ignore[attr-defined]


def test_a_fresh_broker_routes_an_unknown_type_to_the_unrouted_queue(amqp_url: str) -> None:
    with closing(pika.BlockingConnection(pika.URLParameters(amqp_url))) as connection:
        channel = connection.channel()
        declare(channel, FAST)
        channel.confirm_delivery()
        channel.basic_publish(
            "instance.commands", "odoo.instance.explode.v1", b"{}", mandatory=True
        )  # mandatory: an unroutable message would raise here
        waiting = channel.queue_declare(FAST.unrouted_queue, passive=True).method.message_count
        assert waiting == 1
        for queue in (FAST.quick_queue, FAST.long_queue):
            assert channel.queue_declare(queue, passive=True).method.message_count == 0
