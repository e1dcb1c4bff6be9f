"""Bytes and AMQP properties in, a typed command out, or one `MessageRejected` with the reason.

The checks run cheapest first: size before decoding, structure (UTF-8, JSON, duplicate keys,
depth, top-level object) before the schema, so a hostile message costs little.
"""

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from messages.amqp import AmqpProperties
from messages.commands import COMMAND_MODELS, AnyCommand, Command
from messages.envelope import CLOUDEVENTS_CONTENT_TYPE, MAX_BODY_BYTES
from messages.errors import FieldProblem, MessageRejected, RejectionCode
from messages.settings import ContractSettings
from messages.structure import scan

MAX_NESTING_DEPTH = 32
"""Deepest nesting of objects and arrays accepted; the deepest command needs 3."""

ACCEPTED_CONTENT_TYPES = frozenset({CLOUDEVENTS_CONTENT_TYPE, "application/json"})
MAX_DETAILS = 50
"""Field problems listed in one rejection; the rest are counted."""
MAX_DETAIL_CHARS = 200

COMMAND_ADAPTER: TypeAdapter[AnyCommand] = TypeAdapter(Command)
"""Validates any command through the discriminated union on `type`."""


def media_type(content_type: str) -> str:
    """`application/cloudevents+json; charset=utf-8` -> `application/cloudevents+json`."""
    return content_type.split(";", 1)[0].strip().lower()


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


def decode_document(body: bytes) -> dict[str, Any]:
    """Check size, nesting, encoding and JSON structure; return the top-level object.

    Size and nesting are checked by a scan that never recurses (messages.structure), before
    anything parses the body; a refusal carries the top-level id the scan could read, so the
    message can still be answered.
    """
    shape = scan(body, MAX_NESTING_DEPTH)

    def malformed(message: str) -> MessageRejected:
        return MessageRejected(
            RejectionCode.MALFORMED, message, (), shape.command_id, shape.command_type
        )

    if len(body) > MAX_BODY_BYTES:
        raise MessageRejected(
            RejectionCode.TOO_LARGE,
            f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} bytes (256 KiB)",
            (),
            shape.command_id,
            shape.command_type,
        )
    if shape.depth > MAX_NESTING_DEPTH:
        raise malformed(f"nesting deeper than {MAX_NESTING_DEPTH} levels")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise malformed(f"body is not valid UTF-8 (byte {error.start})") from error
    try:
        document = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except _DuplicateKeyError as error:
        raise malformed(f"duplicate key '{_clip(str(error))}' in a JSON object") from error
    except RecursionError as error:  # the scan should have caught it; kept as a backstop
        raise malformed(f"nesting deeper than {MAX_NESTING_DEPTH} levels") from error
    except ValueError as error:  # JSONDecodeError and the rejected constants
        raise malformed(f"body is not JSON: {_clip(str(error))}") from error
    if not isinstance(document, dict):
        raise malformed(f"body is a JSON {type(document).__name__}, not an object")
    if _depth_exceeds(document, MAX_NESTING_DEPTH):
        raise malformed(f"nesting deeper than {MAX_NESTING_DEPTH} levels")
    return document


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def field_problems(error: ValidationError, skip: str | None = None) -> tuple[FieldProblem, ...]:
    """One problem per field pydantic complained about, with a dotted path.

    `skip` drops a leading path element (a union's tag). At most MAX_DETAILS are listed and
    each is clipped, so an answer stays small whatever the question was.
    """
    issues = error.errors(include_url=False, include_input=False)
    problems = []
    for issue in issues[:MAX_DETAILS]:
        location = list(issue["loc"])
        if location and location[0] == skip:
            location = location[1:]
        field = ".".join(str(part) for part in location) or "(message)"
        problems.append(
            FieldProblem(_clip(field), _clip(issue["msg"].removeprefix("Value error, ")))
        )
    if len(issues) > MAX_DETAILS:
        problems.append(FieldProblem("(more)", f"{len(issues) - MAX_DETAILS} more not listed"))
    return tuple(problems)


def parse_command(
    body: bytes,
    properties: AmqpProperties,
    settings: ContractSettings | None = None,
    *,
    routing_key: str | None = None,
    now: datetime | None = None,
) -> AnyCommand:
    """Turn one delivery into a typed command, or raise `MessageRejected` saying why not.

    `routing_key` is the key the message was published with to instance.commands (None when
    it came another way, e.g. back from a delay queue): the body's `type` must equal it. `now`
    is the service's clock, for the bound on `time` (default: the current time).
    """
    settings = settings or ContractSettings()
    document = decode_document(body)
    command_id, command_type = _readable(document, "id"), _readable(document, "type")

    def reject(code: RejectionCode, message: str, *details: FieldProblem) -> MessageRejected:
        return MessageRejected(code, message, details, command_id, command_type)

    content_type = properties.content_type
    if content_type is not None and media_type(content_type) not in ACCEPTED_CONTENT_TYPES:
        raise reject(
            RejectionCode.MALFORMED,
            f"content_type '{_clip(content_type)}' is not {CLOUDEVENTS_CONTENT_TYPE}",
        )
    if "type" not in document:
        raise reject(
            RejectionCode.INVALID_DATA,
            "the message has no type",
            FieldProblem("type", "Field required"),
        )
    if routing_key is not None and document["type"] != routing_key:
        raise reject(
            RejectionCode.INVALID_DATA,
            f"type {_clip(json.dumps(document['type']))} differs from the routing key "
            f"'{_clip(routing_key)}' it was published with",
            FieldProblem("type", f"must equal the routing key '{_clip(routing_key)}'"),
        )
    if command_type not in COMMAND_MODELS:
        raise reject(
            RejectionCode.UNSUPPORTED_TYPE,
            f"type {_clip(json.dumps(document['type']))} is not a command this service accepts",
        )
    try:
        # Validated from the text so that strict mode still reads UUIDs and timestamps.
        command = COMMAND_ADAPTER.validate_json(body, strict=True, context={"contract": settings})
    except ValidationError as error:
        unreadable = [e for e in error.errors() if e["type"] == "json_invalid"]
        if unreadable:  # e.g. a lone surrogate escape the first decoder let through
            raise reject(
                RejectionCode.MALFORMED, f"body is not JSON: {unreadable[0]['msg']}"
            ) from error
        problems = field_problems(error, skip=command_type)
        count = error.error_count()
        raise reject(
            RejectionCode.INVALID_DATA,
            f"{count} field(s) of {command_type} break the contract",
            *problems,
        ) from error
    if properties.message_id is not None and properties.message_id != command.id:
        raise reject(
            RejectionCode.INVALID_DATA,
            "the AMQP message_id differs from the CloudEvent id",
            FieldProblem("properties.message_id", f"must equal id '{command.id}'"),
        )
    # A time far ahead would become the instance's last command time and make every later
    # command (a billing suspend, a delete) `stale`: refused before it can.
    clock = now or datetime.now(UTC)
    ahead = (command.time - clock).total_seconds()
    if ahead > settings.clock_skew_seconds:
        raise reject(
            RejectionCode.INVALID_DATA,
            f"time {command.time.isoformat()} is {ahead:.0f} s ahead of the service's clock "
            f"(at most {settings.clock_skew_seconds:g} s of clock skew is accepted)",
            FieldProblem("time", "must not lie in the future"),
        )
    return command
