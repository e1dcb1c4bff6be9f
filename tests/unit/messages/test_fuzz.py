"""Whatever arrives, parsing returns a command or raises the contract's error: nothing else."""

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from messages.amqp import AmqpProperties
from messages.commands import COMMAND_MODELS
from messages.errors import MessageRejected, RejectionCode
from messages.examples import command_example
from messages.parsing import parse_command

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)


def _outcome(body: bytes) -> str:
    rejection: MessageRejected | None = None
    try:
        command = parse_command(body, AmqpProperties())
    except MessageRejected as raised:  # anything else fails the test
        rejection = raised
    if rejection is not None:
        assert isinstance(rejection.code, RejectionCode)
        assert rejection.message
        return str(rejection.code)
    assert command.type in COMMAND_MODELS
    return "accepted"


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_random_bytes(body: bytes) -> None:
    _outcome(body)


@settings(max_examples=300)
@given(json_values)
def test_random_json(value: Any) -> None:
    _outcome(json.dumps(value).encode())


@settings(max_examples=500)
@given(
    st.sampled_from(sorted(COMMAND_MODELS)),
    st.lists(st.sampled_from(["top", "data"]), min_size=1, max_size=3),
    st.data(),
)
def test_valid_commands_with_random_fields_replaced(
    command_type: str, where: list[str], data: st.DataObject
) -> None:
    document = command_example(command_type)
    for place in where:
        inner = document.get("data")
        target = inner if place == "data" and isinstance(inner, dict) and inner else document
        key = data.draw(st.sampled_from(sorted(target)) | st.text(max_size=8))
        target[key] = data.draw(json_values)
    _outcome(json.dumps(document).encode())


@given(st.sampled_from(sorted(COMMAND_MODELS)))
def test_every_example_is_accepted(command_type: str) -> None:
    assert _outcome(json.dumps(command_example(command_type)).encode()) == "accepted"
