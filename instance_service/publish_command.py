"""`instance-service publish FILE|- [--wait SECONDS]`: send a command, maybe await its result.

Exit status: 0 published (and, when waiting, answered by its success event); 1 the document is
not a valid command, or the answer was `command.failed`/`command.rejected`; 2 the file cannot
be read; 69 RabbitMQ is unreachable or refused the command; 75 no answer within the wait.
"""

import json
import sys
import uuid
from datetime import UTC, datetime
from typing import BinaryIO, TextIO

from consumers.publisher import BrokerUnavailableError, PublishError, publish_command
from consumers.settings import AmqpSettings
from instance_service.documents import (
    DocumentUnreadableError,
    complain,
    parse_or_report,
    read_document,
)
from messages.amqp import AmqpProperties, OutgoingMessage
from messages.serialization import COMMANDS_EXCHANGE
from messages.settings import ContractSettings

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NO_ANSWER = 0, 1, 2, 69, 75
FAILURE_TYPES = ("odoo.instance.command.failed.v1", "odoo.instance.command.rejected.v1")


def refreshed(body: bytes) -> bytes:
    """The document as a new command: a new `id` and `time` now (for documents kept in files,
    such as docs/examples/, which would otherwise be answered from the inbox or be stale).
    A body that is not a JSON object is returned as it is, for validation to refuse."""
    try:
        document = json.loads(body)
    except ValueError:
        return body
    if not isinstance(document, dict):
        return body
    document["id"] = str(uuid.uuid4())
    document["time"] = datetime.now(UTC).isoformat()
    return json.dumps(document).encode()


def run_publish(
    amqp: AmqpSettings,
    contract: ContractSettings,
    source: str,
    wait_seconds: float | None,
    stdin: BinaryIO,
    out: TextIO,
    *,
    fresh: bool = False,
) -> int:
    """Validate, publish, and maybe wait; see the module docstring for the exit status."""
    try:
        body = read_document(source, stdin)
    except DocumentUnreadableError as error:
        complain("publish", error)
        return EXIT_USAGE
    if fresh:
        body = refreshed(body)
    command = parse_or_report(body, contract, out)
    if command is None:
        return EXIT_REFUSED
    headers = {k: v for k in ("traceparent", "tracestate") if (v := getattr(command, k))}
    message = OutgoingMessage(
        COMMANDS_EXCHANGE,
        command.type,
        body,
        AmqpProperties(message_id=command.id, headers=headers),
    )

    def progress(elapsed: float) -> None:
        print(f"waiting for the result of {command.id}: {elapsed:.0f} s", file=sys.stderr)

    try:
        published = publish_command(amqp, message, wait_seconds=wait_seconds, progress=progress)
    except (BrokerUnavailableError, PublishError) as error:
        complain("publish", error)
        return EXIT_UNAVAILABLE
    if wait_seconds is None:
        print(f"published {command.id} ({command.type})", file=sys.stderr)
        return EXIT_OK
    if published.result is None:
        print(f"no result for {command.id} within {wait_seconds:g} s", file=sys.stderr)
        return EXIT_NO_ANSWER
    out.write(json.dumps(published.result, indent=2) + "\n")
    return EXIT_REFUSED if published.result.get("type") in FAILURE_TYPES else EXIT_OK
