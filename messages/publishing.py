"""For other Python services: build a valid command, ready to publish to `instance.commands`.

    message = build_command(
        "odoo.instance.suspend.v1",
        {"instance_id": iid, "reason": "payment_failed"},
        source="/billing-service",
    )
    channel.basic_publish(message.exchange, message.routing_key, message.body, <properties>)

The command is validated with the same models the service uses, so an invalid one fails here
with `MessageRejected`, not later as a rejection event. When an OpenTelemetry span is active,
its context travels as `traceparent`/`tracestate`.
"""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry import propagate
from pydantic import ValidationError
from pydantic_core import to_json

from messages.amqp import OutgoingMessage
from messages.commands import COMMAND_MODELS
from messages.errors import MessageRejected, RejectionCode
from messages.parsing import field_problems
from messages.serialization import COMMANDS_EXCHANGE, to_message
from messages.settings import ContractSettings


def build_command(
    command_type: str,
    data: Mapping[str, Any],
    *,
    source: str,
    command_id: str | None = None,
    correlationid: str | None = None,
    time: datetime | None = None,
    settings: ContractSettings | None = None,
) -> OutgoingMessage:
    """A validated command of `command_type`; `subject` is taken from `data["instance_id"]`."""
    if time is not None and time.tzinfo is None:
        raise ValueError("time must be timezone-aware (e.g. datetime.now(UTC))")
    model = COMMAND_MODELS.get(command_type)
    if model is None:
        raise MessageRejected(
            RejectionCode.UNSUPPORTED_TYPE, f"{command_type!r} is not a command type"
        )
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": command_id or str(uuid.uuid4()),
        "source": source,
        "type": command_type,
        "time": (time or datetime.now(UTC)).isoformat(),
        "datacontenttype": "application/json",
        "data": dict(data),
    }
    if "instance_id" in data:
        document["subject"] = data["instance_id"]
    if correlationid is not None:
        document["correlationid"] = correlationid
    document.update({k: v for k, v in carrier.items() if k in ("traceparent", "tracestate")})
    try:
        # to_json also writes UUIDs, datetimes and models a caller may pass in `data`.
        command = model.model_validate_json(
            to_json(document), strict=True, context={"contract": settings or ContractSettings()}
        )
    except ValidationError as error:
        raise MessageRejected(
            RejectionCode.INVALID_DATA,
            f"not a valid {command_type}",
            field_problems(error),
            document["id"],
            command_type,
        ) from error
    return to_message(command, COMMANDS_EXCHANGE)
