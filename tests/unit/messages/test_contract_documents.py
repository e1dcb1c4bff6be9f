"""The AsyncAPI document is generated from the models, and its examples hold in both directions."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from instance_service.contract_commands import render_asyncapi
from messages.amqp import AmqpProperties
from messages.commands import COMMAND_MODELS
from messages.events import EVENT_MODELS
from messages.examples import command_example, event_example
from messages.parsing import parse_command
from messages.schema import message_schema
from messages.serialization import serialize_event
from messages.settings import ContractSettings

FORMATS = jsonschema.FormatChecker()
ASYNCAPI = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return loaded


def test_committed_document_is_what_the_models_generate() -> None:
    assert ASYNCAPI.read_text() == render_asyncapi(ContractSettings()), (
        "docs/asyncapi.yaml is stale: regenerate it with "
        "`.venv/bin/instance-service schema > docs/asyncapi.yaml`"
    )


def test_document_describes_both_exchanges_and_every_message(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    channels = document["channels"]
    assert channels["instanceCommands"]["address"] == "instance.commands"
    assert channels["instanceEvents"]["address"] == "instance.events"
    names = {message["name"] for message in document["components"]["messages"].values()}
    assert names == set(COMMAND_MODELS) | set(EVENT_MODELS)
    assert document["operations"]["receiveCommands"]["action"] == "receive"
    assert document["operations"]["sendEvents"]["action"] == "send"


def _examples(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (message["name"], example["payload"])
        for message in document["components"]["messages"].values()
        for example in message["examples"]
    ]


def test_every_command_example_parses(document: dict[str, Any]) -> None:
    commands = [(name, p) for name, p in _examples(document) if name in COMMAND_MODELS]
    assert len(commands) == len(COMMAND_MODELS)
    for name, payload in commands:
        command = parse_command(json.dumps(payload).encode(), AmqpProperties())
        assert command.type == name


def test_every_event_example_validates_against_its_schema(document: dict[str, Any]) -> None:
    events = [(name, p) for name, p in _examples(document) if name in EVENT_MODELS]
    assert len(events) == len(EVENT_MODELS)
    for name, payload in events:
        jsonschema.validate(payload, message_schema(name), format_checker=FORMATS)
        assert EVENT_MODELS[name].model_validate(payload).type == name


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_serialized_event_validates_against_its_own_schema(event_type: str) -> None:
    message = serialize_event(event_example(event_type))
    body = json.loads(message.body)
    jsonschema.validate(body, message_schema(event_type), format_checker=FORMATS)
    assert message.exchange == "instance.events"
    assert message.routing_key == event_type
    assert message.properties.content_type == "application/cloudevents+json"
    assert message.properties.delivery_mode == 2
    assert message.properties.message_id == body["id"]
    assert message.properties.headers == {"traceparent": body["traceparent"]}


@pytest.mark.parametrize("command_type", sorted(COMMAND_MODELS))
def test_command_schema_accepts_the_example_and_rejects_broken_ones(command_type: str) -> None:
    schema = message_schema(command_type)
    example = command_example(command_type)
    jsonschema.validate(example, schema, format_checker=FORMATS)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "unexpected": True}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "id": ""}, schema)
    if example.get("subject"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**example, "subject": "NOT-A-UUID"}, schema)


def test_schemas_state_the_configured_rules() -> None:
    schema = message_schema("odoo.instance.provision.v1", ContractSettings(odoo_versions=("18.0",)))
    data = schema["$defs"]["ProvisionData"]["properties"]
    assert data["odoo_version"]["enum"] == ["18.0"]
    assert "www" in data["subdomain"]["not"]["enum"]
    plan = schema["$defs"]["Plan"]["properties"]
    assert (plan["cpu_millicores"]["minimum"], plan["cpu_millicores"]["maximum"]) == (250, 16000)


def test_unknown_type_has_no_schema() -> None:
    with pytest.raises(KeyError, match="unknown message type"):
        message_schema("odoo.instance.nope.v1")


def test_the_official_asyncapi_parser_accepts_the_document() -> None:
    checker = ASYNCAPI.parents[1] / "tools" / "asyncapi-check"
    node = shutil.which("node")
    if node is None or not (checker / "node_modules" / "@asyncapi" / "parser").is_dir():
        message = "the AsyncAPI parser is not installed (scripts/bootstrap.sh installs it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [node, str(checker / "check.mjs"), str(ASYNCAPI)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    diagnostics = [json.loads(line) for line in result.stdout.splitlines()]
    errors = [d for d in diagnostics if d["severity"] == 0]
    assert result.returncode == 0, errors or result.stderr
    assert errors == []
