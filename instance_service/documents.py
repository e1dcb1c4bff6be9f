"""Reading a command document from a file or stdin, as `validate` and `publish` both do."""

import json
import sys
from pathlib import Path
from typing import BinaryIO, TextIO

from messages.amqp import AmqpProperties
from messages.commands import AnyCommand
from messages.errors import MessageRejected
from messages.parsing import parse_command
from messages.settings import ContractSettings


class DocumentUnreadableError(Exception):
    """The file (or stdin) could not be read; the message says which and why."""


def read_document(source: str, stdin: BinaryIO) -> bytes:
    """The bytes of `source`, a path or `-` for stdin."""
    try:
        return stdin.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise DocumentUnreadableError(f"cannot read {source}: {error.strerror}") from error


def parse_or_report(body: bytes, contract: ContractSettings, out: TextIO) -> AnyCommand | None:
    """The command, or None after printing its rejection as `{code, message, details}`."""
    try:
        return parse_command(body, AmqpProperties(), contract)
    except MessageRejected as rejection:
        out.write(json.dumps(rejection.as_error(), indent=2) + "\n")
        return None


def complain(command: str, error: Exception) -> None:
    """One line on stderr, prefixed with the subcommand."""
    print(f"instance-service {command}: {error}", file=sys.stderr)
