"""The edge's checks before any parse: nesting, size and a lenient id, a routing key that lies,
and a time from the future (issue 16, items 1, 2 and 4, at the parser; the broker tests are in
tests/consumers/test_hostile.py)."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from messages.amqp import AmqpProperties
from messages.envelope import MAX_BODY_BYTES
from messages.errors import MessageRejected, RejectionCode
from messages.parsing import MAX_NESTING_DEPTH, parse_command
from messages.settings import ContractSettings
from messages.structure import scan
from telemetry.tracing import carrier_of
from tests.unit.messages.documents import encode, provision


def _rejection(body: bytes, **options: object) -> MessageRejected:
    with pytest.raises(MessageRejected) as caught:
        parse_command(body, AmqpProperties(), **options)  # type: ignore[arg-type]
    return caught.value


def test_a_deeply_nested_body_is_refused_with_its_id_and_no_recursion() -> None:
    # 200 KB of nested arrays: a recursive parser raises RecursionError on it.
    body = b'{"id": "deep-1", "type": "odoo.instance.stop.v1", "data": ' + b"[" * 100_000
    body += b"]" * 100_000 + b"}"
    shape = scan(body, MAX_NESTING_DEPTH)
    assert shape.depth > MAX_NESTING_DEPTH  # the scan stops once it knows enough
    assert (shape.command_id, shape.command_type) == ("deep-1", "odoo.instance.stop.v1")
    rejection = _rejection(body)
    assert rejection.code is RejectionCode.MALFORMED
    assert rejection.command_id == "deep-1"
    assert "nesting deeper than 32" in rejection.message


def test_the_trace_context_of_an_unchecked_body_is_never_parsed() -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    assert carrier_of({}, None) == {}
    assert carrier_of({"traceparent": "00-x"}, {"traceparent": "00-y"}) == {"traceparent": "00-x"}
    with pytest.raises(MessageRejected):
        parse_command(body, AmqpProperties())


def test_a_body_too_large_is_answered_by_its_id() -> None:
    document = provision()
    document["data"]["language"] = "x" * MAX_BODY_BYTES
    rejection = _rejection(encode(document))
    assert rejection.code is RejectionCode.TOO_LARGE
    assert rejection.command_id == document["id"]


@pytest.mark.parametrize(
    ("body", "command_id"),
    [
        (b'{"data": {"id": "nested"}, "id": "top"}', "top"),
        (b'{"x": "id", "id": "second"}', "second"),
        (b'{"id": "with \\" quote"}', None),  # escapes are not read leniently
        (b'{"id": "' + b"a" * 129 + b'"}', None),  # longer than an id may be
        (b'{"id": "unterminated', None),
        (b'{"id": "ok", "x": "unterminated', "ok"),
    ],
)
def test_the_lenient_id_is_the_top_level_one_when_plainly_written(
    body: bytes, command_id: str | None
) -> None:
    assert scan(body, MAX_NESTING_DEPTH).command_id == command_id


def test_an_unterminated_string_of_escaped_quotes_is_scanned_in_linear_time() -> None:
    body = b'{"id": "a", "x": "' + b'\\"' * 120_000
    shape = scan(body, MAX_NESTING_DEPTH)  # quadratic would take minutes
    assert (shape.command_id, shape.complete) == ("a", False)


def test_a_type_that_is_not_the_routing_key_is_invalid_data() -> None:
    document = provision()
    rejection = _rejection(encode(document), routing_key="odoo.instance.stop.v1")
    assert rejection.code is RejectionCode.INVALID_DATA
    assert rejection.details[0].field == "type"
    assert parse_command(encode(document), AmqpProperties(), routing_key=document["type"])


def test_an_unknown_type_under_its_own_key_is_unsupported() -> None:
    document = {**provision(), "type": "odoo.instance.explode.v1"}
    rejection = _rejection(encode(document), routing_key="odoo.instance.explode.v1")
    assert rejection.code is RejectionCode.UNSUPPORTED_TYPE
    assert rejection.command_id == document["id"]


@pytest.mark.parametrize(("ahead", "refused"), [(299, False), (301, True), (86400 * 3650, True)])
def test_a_time_beyond_the_clock_skew_is_invalid_data(ahead: int, refused: bool) -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    document = provision()
    document["time"] = (now + timedelta(seconds=ahead)).isoformat()
    body = json.dumps(document).encode()
    if not refused:
        assert parse_command(body, AmqpProperties(), now=now)
        return
    rejection = _rejection(body, now=now)
    assert rejection.code is RejectionCode.INVALID_DATA
    assert [problem.field for problem in rejection.details] == ["time"]


def test_the_clock_skew_is_a_setting() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    document = provision()
    document["time"] = (now + timedelta(seconds=60)).isoformat()
    body = json.dumps(document).encode()
    strict = ContractSettings(clock_skew_seconds=30)
    assert _rejection(body, settings=strict, now=now).code is RejectionCode.INVALID_DATA
