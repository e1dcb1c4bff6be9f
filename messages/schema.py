"""JSON Schema of every message and the AsyncAPI 3.0 document, generated from the models.

What the document says of each command beyond its model (the event that reports its success)
comes from the command declarations (handlers/declarations.py), handed in by the entry point as
`DocumentedCommand`s: messages/ imports nothing of ours. Rules that come from settings (Odoo
versions, reserved subdomains, plan bounds) are validators in the models; they are written into
the schemas here, so the published documents state them.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from messages.commands import COMMAND_MODELS
from messages.envelope import CLOUDEVENTS_CONTENT_TYPE, Envelope, type_name
from messages.errors import RejectionCode
from messages.events import EVENT_MODELS
from messages.examples import command_example, event_example
from messages.serialization import COMMANDS_EXCHANGE, EVENTS_EXCHANGE
from messages.settings import ContractSettings

ASYNCAPI_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class DocumentedCommand:
    """A command as the AsyncAPI document states it: its model and its success event's type."""

    model: type[Envelope]
    success_event: str


def _apply_settings(node: Any, settings: ContractSettings) -> None:
    """Write the configurable rules into every schema object that has the fields they govern."""
    if isinstance(node, list):
        for item in node:
            _apply_settings(item, settings)
        return
    if not isinstance(node, dict):
        return
    properties = node.get("properties")
    if isinstance(properties, dict):
        for name, bounds in (
            ("cpu_millicores", settings.cpu_millicores),
            ("memory_mib", settings.memory_mib),
            ("storage_gib", settings.storage_gib),
        ):
            if name in properties:
                properties[name].update(minimum=bounds.minimum, maximum=bounds.maximum)
        if "subdomain" in properties:
            properties["subdomain"]["not"] = {"enum": sorted(settings.reserved_subdomains)}
        if "odoo_version" in properties:
            properties["odoo_version"]["enum"] = list(settings.odoo_versions)
    for value in node.values():
        _apply_settings(value, settings)


def _schema(model: type[BaseModel], settings: ContractSettings, *, command: bool, ref: str) -> Any:
    mode: Literal["validation", "serialization"] = "validation" if command else "serialization"
    schema = model.model_json_schema(by_alias=True, mode=mode, ref_template=ref)
    if command:  # events report values as they are, even ones the settings no longer allow
        _apply_settings(schema, settings)
    return schema


def message_schema(message_type: str, settings: ContractSettings | None = None) -> dict[str, Any]:
    """The standalone JSON Schema (draft 2020-12) of one command or event type."""
    settings = settings or ContractSettings()
    if message_type in COMMAND_MODELS:
        model: type[BaseModel] = COMMAND_MODELS[message_type]
        command = True
    elif message_type in EVENT_MODELS:
        model, command = EVENT_MODELS[message_type], False
    else:
        known = ", ".join(sorted([*COMMAND_MODELS, *EVENT_MODELS]))
        raise KeyError(f"unknown message type {message_type!r}; known: {known}")
    schema: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    schema.update(_schema(model, settings, command=command, ref="#/$defs/{model}"))
    return schema


def message_types() -> list[str]:
    """Every command and event type, commands first."""
    return [*COMMAND_MODELS, *EVENT_MODELS]


def _amqp_channel_binding(exchange: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {"name": exchange, "type": "topic", "durable": True, "autoDelete": False},
            "bindingVersion": "0.3.0",
        }
    }


def _amqp_operation_binding() -> dict[str, Any]:
    # Persistent messages both ways (delivery_mode 2), as the contract requires.
    return {"amqp": {"deliveryMode": 2, "bindingVersion": "0.3.0"}}


def asyncapi_document(
    version: str, commands: Sequence[DocumentedCommand], settings: ContractSettings | None = None
) -> dict[str, Any]:
    """The AsyncAPI 3.0 description of both exchanges, every message, and an example of each;
    `commands` are the declared commands, in the order the document lists them."""
    settings = settings or ContractSettings()
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channel_messages: dict[str, dict[str, Any]] = {"commands": {}, "events": {}}

    def add(
        message_type: str,
        model: type[BaseModel],
        command: bool,
        example: Any,
        description: str | None = None,
    ) -> None:
        schema = _schema(model, settings, command=command, ref=ASYNCAPI_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        messages[model.__name__] = {
            "name": message_type,
            "title": message_type,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            **({"description": description} if description else {}),
            "contentType": CLOUDEVENTS_CONTENT_TYPE,
            "payload": {"$ref": ASYNCAPI_REF.format(model=model.__name__)},
            "examples": [{"name": model.__name__, "payload": example}],
        }
        side = "commands" if command else "events"
        channel_messages[side][model.__name__] = {"$ref": f"#/components/messages/{model.__name__}"}

    for documented in commands:
        message_type = type_name(documented.model)
        add(
            message_type,
            documented.model,
            True,
            command_example(message_type),
            f"Its success is reported by `{documented.success_event}`.",
        )
    for message_type, event_model in EVENT_MODELS.items():
        example = json.loads(
            event_example(message_type).model_dump_json(by_alias=True, exclude_none=True)
        )
        add(message_type, event_model, False, example)

    codes = ", ".join(f"`{code}`" for code in RejectionCode)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "instance-service",
            "version": version,
            "description": (
                "Commands that run tenant Odoo instances on Kubernetes, and the events that "
                "report their outcome. Every message is a CloudEvents 1.0 structured-mode JSON "
                "document (at most 256 KiB) whose `type` is also the AMQP routing key; AMQP "
                "properties: content_type application/cloudevents+json, delivery_mode 2, "
                "message_id = the CloudEvent id; traceparent/tracestate travel as headers and "
                "as CloudEvents attributes. Each command id receives exactly one terminal event: "
                "its success event, `odoo.instance.command.failed.v1` or "
                f"`odoo.instance.command.rejected.v1` (codes: {codes}). Size and nesting are "
                "checked before anything reads a body; a body refused that early is still "
                "answered when its top-level `id` can be read. A command's `time` may lie at "
                f"most {settings.clock_skew_seconds:g} s ahead of the service's clock "
                "(`invalid_data` otherwise). Headers named `x-instance-service-*` are the "
                "service's own and are ignored on a published command."
            ),
        },
        "defaultContentType": CLOUDEVENTS_CONTENT_TYPE,
        "channels": {
            "instanceCommands": {
                "address": COMMANDS_EXCHANGE,
                "description": (
                    "Topic exchange of instance commands; routing key = command type (a body "
                    "whose `type` differs from its routing key is `invalid_data`). Every routing "
                    "key under `odoo.` is answered: a type no deployed version of the service "
                    "serves reaches the exchange's alternate exchange and is rejected "
                    "`unsupported_type`."
                ),
                "messages": channel_messages["commands"],
                "bindings": _amqp_channel_binding(COMMANDS_EXCHANGE),
            },
            "instanceEvents": {
                "address": EVENTS_EXCHANGE,
                "description": "Topic exchange of result events; routing key = event type.",
                "messages": channel_messages["events"],
                "bindings": _amqp_channel_binding(EVENTS_EXCHANGE),
            },
        },
        "operations": {
            "receiveCommands": {
                "action": "receive",
                "title": "instance-service consumes commands",
                "channel": {"$ref": "#/channels/instanceCommands"},
                "bindings": _amqp_operation_binding(),
                "messages": [
                    {"$ref": f"#/channels/instanceCommands/messages/{name}"}
                    for name in channel_messages["commands"]
                ],
            },
            "sendEvents": {
                "action": "send",
                "title": "instance-service publishes result events",
                "channel": {"$ref": "#/channels/instanceEvents"},
                "bindings": _amqp_operation_binding(),
                "messages": [
                    {"$ref": f"#/channels/instanceEvents/messages/{name}"}
                    for name in channel_messages["events"]
                ],
            },
        },
        "components": {"messages": messages, "schemas": schemas},
    }
