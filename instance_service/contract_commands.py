"""`instance-service schema` and `instance-service validate`: the contract from the command line."""

import json
import sys
from typing import BinaryIO, TextIO

import yaml

from handlers.catalog import command_catalog
from instance_service import __version__
from instance_service.documents import (
    DocumentUnreadableError,
    complain,
    parse_or_report,
    read_document,
)
from messages.schema import asyncapi_document, message_schema, message_types
from messages.settings import ContractSettings

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


def render_asyncapi(settings: ContractSettings) -> str:
    """The AsyncAPI document as YAML, exactly as committed in docs/asyncapi.yaml."""
    document = asyncapi_document(__version__, command_catalog().documented(), settings)
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
        body = read_document(source, stdin)
    except DocumentUnreadableError as error:
        complain("validate", error)
        return EXIT_USAGE
    command = parse_or_report(body, settings, out)
    if command is None:
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
