"""Bytes and AMQP properties in, a typed command out, or one `MessageRejected` with the reason.

The checks run cheapest first: size before decoding, structure (UTF-8, JSON, duplicate keys,
depth, top-level object) before the schema, so a hostile message costs little.
"""

import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from messages.amqp import AmqpProperties
from messages.commands import COMMAND_MODELS, AnyCommand
from messages.envelope import CLOUDEVENTS_CONTENT_TYPE, MAX_BODY_BYTES
from messages.errors import FieldProblem, MessageRejected, RejectionCode
from messages.settings import ContractSettings

MAX_NESTING_DEPTH = 32
"""Deepest nesting of objects and arrays accepted; the deepest command needs 3."""

ACCEPTED_CONTENT_TYPES = frozenset({CLOUDEVENTS_CONTENT_TYPE, "application/json"})


class _DuplicateKeyError(ValueError):
    pass


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _depth_exceeds(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[object]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _readable(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if isinstance(value, str) and 0 < len(value) <= 128 and value.isascii() and value.isprintable():
        return value
    return None


def _malformed(message: str) -> MessageRejected:
    return MessageRejected(RejectionCode.MALFORMED, message)


def decode_document(body: bytes) -> dict[str, Any]:
    """Check size, encoding and JSON structure; return the top-level object."""
    if len(body) > MAX_BODY_BYTES:
        raise MessageRejected(
            RejectionCode.TOO_LARGE,
            f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} bytes (256 KiB)",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _malformed(f"body is not valid UTF-8 (byte {error.start})") from error
    try:
        document = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except _DuplicateKeyError as error:
        raise _malformed(f"duplicate key '{error}' in a JSON object") from error
    except RecursionError as error:
        raise _malformed(f"nesting deeper than {MAX_NESTING_DEPTH} levels") from error
    except ValueError as error:  # JSONDecodeError and the rejected constants
        raise _malformed(f"body is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise _malformed(f"body is a JSON {type(document).__name__}, not an object")
    if _depth_exceeds(document, MAX_NESTING_DEPTH):
        raise _malformed(f"nesting deeper than {MAX_NESTING_DEPTH} levels")
    return document


def field_problems(error: ValidationError) -> tuple[FieldProblem, ...]:
    """One problem per field pydantic complained about, with a dotted path."""
    problems = []
    for issue in error.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in issue["loc"]) or "(message)"
        message = issue["msg"].removeprefix("Value error, ")
        problems.append(FieldProblem(field, message))
    return tuple(problems)


def parse_command(
    body: bytes,
    properties: AmqpProperties,
    settings: ContractSettings | None = None,
) -> AnyCommand:
    """Turn one delivery into a typed command, or raise `MessageRejected` saying why not."""
    document = decode_document(body)
    command_id, command_type = _readable(document, "id"), _readable(document, "type")

    def reject(code: RejectionCode, message: str, *details: FieldProblem) -> MessageRejected:
        return MessageRejected(code, message, details, command_id, command_type)

    if properties.content_type not in (None, *ACCEPTED_CONTENT_TYPES):
        raise reject(
            RejectionCode.MALFORMED,
            f"content_type '{properties.content_type}' is not {CLOUDEVENTS_CONTENT_TYPE}",
        )
    if "type" not in document:
        raise reject(
            RejectionCode.INVALID_DATA,
            "the message has no type",
            FieldProblem("type", "Field required"),
        )
    model = COMMAND_MODELS.get(document["type"]) if command_type else None
    if model is None:
        raise reject(
            RejectionCode.UNSUPPORTED_TYPE,
            f"type {json.dumps(document['type'])[:140]} is not a command this service accepts",
        )
    try:
        # Validated from the text so that strict mode still reads UUIDs and timestamps.
        command = model.model_validate_json(
            body, strict=True, context={"contract": settings or ContractSettings()}
        )
    except ValidationError as error:
        problems = field_problems(error)
        raise reject(
            RejectionCode.INVALID_DATA,
            f"{len(problems)} field(s) of {command_type} break the contract",
            *problems,
        ) from error
    if properties.message_id is not None and properties.message_id != command.id:
        raise reject(
            RejectionCode.INVALID_DATA,
            "the AMQP message_id differs from the CloudEvent id",
            FieldProblem("properties.message_id", f"must equal id '{command.id}'"),
        )
    return command
