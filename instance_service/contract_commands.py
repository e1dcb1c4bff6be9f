"""`instance-service schema` and `instance-service validate`: the contract from the command line."""

import json
import sys
from pathlib import Path
from typing import BinaryIO, TextIO

import yaml

from instance_service import __version__
from messages.amqp import AmqpProperties
from messages.errors import MessageRejected
from messages.parsing import parse_command
from messages.schema import asyncapi_document, message_schema, message_types
from messages.settings import ContractSettings

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


def render_asyncapi(settings: ContractSettings) -> str:
    """The AsyncAPI document as YAML, exactly as committed in docs/asyncapi.yaml."""
    document = asyncapi_document(__version__, settings)
    return yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)


def run_schema(settings: ContractSettings, message_type: str | None, out: TextIO) -> int:
    """Print the AsyncAPI document, or one message type's JSON Schema."""
    if message_type is None:
        out.write(render_asyncapi(settings))
        return EXIT_OK
    if message_type not in message_types():
        print(
            f"instance-service schema: unknown message type {message_type!r}; one of:\n  "
            + "\n  ".join(message_types()),
            file=sys.stderr,
        )
        return EXIT_USAGE
    out.write(json.dumps(message_schema(message_type, settings), indent=2) + "\n")
    return EXIT_OK


def run_validate(settings: ContractSettings, source: str, stdin: BinaryIO, out: TextIO) -> int:
    """Parse one command document; print its summary (exit 0) or the rejection (exit 1)."""
    try:
        body = stdin.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        print(f"instance-service validate: cannot read {source}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        command = parse_command(body, AmqpProperties(), settings)
    except MessageRejected as rejection:
        out.write(json.dumps(rejection.as_error(), indent=2) + "\n")
        return EXIT_REJECTED
    summary = {
        "type": command.type,
        "id": command.id,
        "subject": getattr(command, "subject", None),
        "time": command.time.isoformat(),
        "data": command.data.model_dump(mode="json"),
    }
    out.write(json.dumps(summary, indent=2) + "\n")
    return EXIT_OK
