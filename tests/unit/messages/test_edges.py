"""Edges of parsing found in review: content types, nulls, times, sizes, encodings, publishing."""

import json
import uuid
from datetime import UTC, datetime

import pytest

from messages.amqp import AmqpProperties
from messages.commands import ProvisionCommand
from messages.envelope import MAX_BODY_BYTES
from messages.errors import MessageRejected, RejectionCode
from messages.events import CommandRejectedEvent
from messages.parsing import MAX_DETAILS, parse_command
from messages.publishing import build_command
from messages.serialization import serialize_event
from tests.unit.messages.documents import INSTANCE_ID, encode, provision


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/cloudevents+json",
        "application/cloudevents+json; charset=UTF-8",
        "Application/CloudEvents+JSON",
        "application/json",
    ],
)
def test_accepted_content_types(content_type: str | None) -> None:
    properties = AmqpProperties(content_type=content_type, message_id=None)
    assert parse_command(encode(provision()), properties).type == "odoo.instance.provision.v1"


def test_null_optional_attributes_mean_absent() -> None:
    document = provision()
    document.update(correlationid=None, traceparent=None, datacontenttype=None)
    document["data"].update(language=None, modules=None, demo_data=None)
    command = parse_command(encode(document), AmqpProperties())
    assert isinstance(command, ProvisionCommand)
    assert command.correlationid is None
    assert command.data.modules == []
    assert command.data.demo_data is False


def test_null_required_field_is_invalid() -> None:
    document = provision()
    document["data"]["subdomain"] = None
    with pytest.raises(MessageRejected) as raised:
        parse_command(encode(document), AmqpProperties())
    assert [p.field for p in raised.value.details] == ["data.subdomain"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T10:00:00Z", datetime(2026, 11, 27, 10, tzinfo=UTC)),
        ("2026-11-27t12:00:00+02:00", datetime(2026, 11, 27, 10, tzinfo=UTC)),
        ("2026-11-27T10:00:00.123456789123Z", datetime(2026, 11, 27, 10, 0, 0, 123456, UTC)),
    ],
)
def test_times_are_read_as_utc(value: str, expected: datetime) -> None:
    document = provision()
    document["time"] = value
    command = parse_command(encode(document), AmqpProperties())
    assert command.time == expected
    assert command.time.utcoffset() is not None


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-23:59",
        "2026-11-27T10:00:00Z\n",
        "\uff12\uff10\uff12\uff16-11-27T10:00:00Z",  # full-width digits
    ],
)
def test_unrepresentable_or_odd_times_are_invalid_data(value: str) -> None:
    document = provision()
    document["time"] = value
    with pytest.raises(MessageRejected) as raised:
        parse_command(encode(document), AmqpProperties())
    assert raised.value.code is RejectionCode.INVALID_DATA
    assert [p.field for p in raised.value.details] == ["time"]


def test_a_flood_of_problems_gives_a_small_answer() -> None:
    document = provision()
    document["data"].update({f"x{i}": 0 for i in range(15_000)})
    document["data"]["k" * 5000] = 1
    body = encode(document)
    assert len(body) < MAX_BODY_BYTES
    with pytest.raises(MessageRejected) as raised:
        parse_command(body, AmqpProperties())
    rejection = raised.value
    assert len(rejection.details) == MAX_DETAILS + 1
    assert rejection.details[-1].field == "(more)"
    assert all(len(p.field) <= 200 and len(p.message) <= 200 for p in rejection.details)
    event = CommandRejectedEvent.for_rejection(rejection)
    assert len(serialize_event(event).body) < 20_000


def test_a_lone_surrogate_is_malformed_not_invalid() -> None:
    body = encode(provision()).replace(b'"acme"', b'"\\ud800"')
    with pytest.raises(MessageRejected) as raised:
        parse_command(body, AmqpProperties())
    assert raised.value.code is RejectionCode.MALFORMED


def test_publishing_helper_takes_python_values() -> None:
    message = build_command(
        "odoo.instance.backup.v1",
        {"instance_id": uuid.UUID(INSTANCE_ID), "backup_id": uuid.uuid4()},
        source="/ops",
        time=datetime(2026, 11, 27, tzinfo=UTC),
    )
    assert json.loads(message.body)["subject"] == INSTANCE_ID


def test_publishing_helper_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_command(
            "odoo.instance.start.v1",
            {"instance_id": INSTANCE_ID},
            source="/ops",
            time=datetime(2026, 11, 27),
        )
