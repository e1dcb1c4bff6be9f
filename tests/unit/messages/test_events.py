"""Events get their ids, subject and correlation from their cause, as the contract says."""

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from messages.amqp import AmqpProperties
from messages.commands import InstanceCommand
from messages.errors import FieldProblem, MessageRejected, RejectionCode
from messages.events import (
    CommandRejectedEvent,
    FleetReconciledData,
    FleetReconciledEvent,
    InstanceEventData,
    StartedEvent,
    StatusChangedData,
    StatusChangedEvent,
)
from messages.examples import INSTANCE_ID, command_example
from messages.parsing import parse_command
from messages.serialization import serialize_event


def _command(command_type: str, **changes: object) -> InstanceCommand:
    document = {**command_example(command_type), **changes}
    document = {k: v for k, v in document.items() if v is not None}
    parsed = parse_command(json.dumps(document).encode(), AmqpProperties())
    assert isinstance(parsed, InstanceCommand)
    return parsed


def test_event_takes_cause_and_correlation_from_its_command() -> None:
    start = _command("odoo.instance.start.v1", correlationid="order-1")
    event = StartedEvent.caused_by(start, InstanceEventData(instance_id=INSTANCE_ID))
    assert uuid.UUID(event.id).version == 4
    assert event.source == "/instance-service"
    assert event.subject == INSTANCE_ID
    assert event.causationid == start.id
    assert event.correlationid == "order-1"
    other = StartedEvent.caused_by(start, InstanceEventData(instance_id=INSTANCE_ID))
    assert other.id != event.id


def test_without_correlation_id_the_command_id_correlates() -> None:
    start = _command("odoo.instance.start.v1", correlationid=None)
    assert start.correlationid is None
    event = StartedEvent.caused_by(start, InstanceEventData(instance_id=INSTANCE_ID))
    assert event.correlationid == start.id


def test_instance_events_must_name_their_instance_as_subject() -> None:
    start = _command("odoo.instance.start.v1")
    other = "11111111-2222-4333-8444-555555555555"
    with pytest.raises(ValidationError, match="subject must be the instance"):
        StartedEvent.caused_by(start, InstanceEventData(instance_id=other))
    changed = StatusChangedData.model_validate(
        {"instance_id": other, "from": "running", "to": "degraded", "reason": "not ready"}
    )
    event = StatusChangedEvent.caused_by(start, changed, subject=other)
    assert json.loads(serialize_event(event).body)["data"]["from"] == "running"


def test_fleet_events_have_no_subject() -> None:
    reconcile = parse_command(
        json.dumps(command_example("odoo.fleet.reconcile.v1")).encode(), AmqpProperties()
    )
    event = FleetReconciledEvent.caused_by(
        reconcile, FleetReconciledData(checked=1, repaired=0, orphans=0)
    )
    assert event.subject is None
    assert "subject" not in json.loads(serialize_event(event).body)
    with pytest.raises(ValidationError):
        FleetReconciledEvent.caused_by(
            reconcile, FleetReconciledData(checked=1, repaired=0, orphans=0), subject=INSTANCE_ID
        )


def test_rejection_event_carries_what_could_be_read() -> None:
    rejection = MessageRejected(
        RejectionCode.STALE,
        "older than the last command",
        (FieldProblem("time", "too old"),),
        "stop-1",
        "odoo.instance.stop.v1",
    )
    when = datetime(2026, 11, 27, tzinfo=UTC)
    event = CommandRejectedEvent.for_rejection(rejection, subject=INSTANCE_ID, time=when)
    body = json.loads(serialize_event(event).body)
    assert body["causationid"] == "stop-1"
    assert body["correlationid"] == "stop-1"
    assert body["data"] == {
        "command_id": "stop-1",
        "command_type": "odoo.instance.stop.v1",
        "error": {
            "code": "stale",
            "message": "older than the last command",
            "details": [{"field": "time", "message": "too old"}],
        },
    }
    unreadable = CommandRejectedEvent.for_rejection(
        MessageRejected(RejectionCode.MALFORMED, "body is not JSON")
    )
    body = json.loads(serialize_event(unreadable).body)
    assert "causationid" not in body
    assert "subject" not in body
    assert body["data"] == {
        "error": {"code": "malformed", "message": "body is not JSON", "details": []}
    }
