"""Billing holds through the ledger, on both databases: kept apart from the working status, kept
by every failure and rollback, lifted only by unsuspend, reactivate or delete."""

from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, RejectionCode
from messages.events import (
    CommandFailedData,
    CommandFailedEvent,
    ErrorInfo,
    InstanceEventData,
    StartedEvent,
    StatusChangedData,
    StatusChangedEvent,
)
from messages.examples import INSTANCE_ID
from store.ledger import Ledger
from store.lifecycle import Hold, InstanceStatus
from store.models import Instance
from store.records import InstanceRecord, InstanceUpdate, Outcome
from tests.store.conftest import command

T = "odoo.instance."


def _begin(ledger: Ledger, cmd: AnyCommand) -> None:
    with ledger.exclusive(cmd):
        ledger.begin(cmd, ledger.admit(cmd))


def _succeed(ledger: Ledger, cmd: AnyCommand) -> None:
    assert isinstance(cmd, InstanceCommand)
    event = StartedEvent.caused_by(cmd, InstanceEventData(instance_id=cmd.subject))
    ledger.record(cmd, Outcome.SUCCEEDED, event)


def _fail(ledger: Ledger, cmd: AnyCommand, *, rolled_back: bool = False) -> None:
    assert isinstance(cmd, InstanceCommand)
    data = CommandFailedData(
        instance_id=cmd.subject,
        command_id=cmd.id,
        command_type=cmd.type,
        error=ErrorInfo(code="kubernetes_forbidden", message="the StorageClass cannot expand"),
        rolled_back=rolled_back,
    )
    ledger.record(
        cmd,
        Outcome.FAILED,
        CommandFailedEvent.caused_by(cmd, data),
        update=InstanceUpdate(last_error="the StorageClass cannot expand", rolled_back=rolled_back),
    )


def _run(ledger: Ledger, verb: str, seconds: float, **data: Any) -> AnyCommand:
    cmd = command(f"{T}{verb}.v1", seconds=seconds, **data)
    _begin(ledger, cmd)
    _succeed(ledger, cmd)
    return cmd


def _instance(ledger: Ledger) -> InstanceRecord:
    record = ledger.instance(INSTANCE_ID)
    assert record is not None
    return record


def _refused(ledger: Ledger, verb: str, seconds: float) -> MessageRejected:
    with pytest.raises(MessageRejected) as raised:
        ledger.admit(command(f"{T}{verb}.v1", seconds=seconds))
    return raised.value


def _suspended(ledger: Ledger) -> None:
    _run(ledger, "provision", 0)
    _run(ledger, "suspend", 1)
    record = _instance(ledger)
    assert (record.status, record.hold) == (InstanceStatus.SUSPENDED, Hold.SUSPENDED)


@pytest.mark.parametrize("rolled_back", [False, True], ids=["failed", "rolled-back"])
def test_a_failure_on_a_suspended_instance_leaves_it_suspended(
    ledger: Ledger, rolled_back: bool
) -> None:
    _suspended(ledger)
    resize = command(f"{T}resize.v1", seconds=2)
    _begin(ledger, resize)
    working = _instance(ledger)
    assert (working.status, working.hold) == (InstanceStatus.RESIZING, Hold.SUSPENDED)
    _fail(ledger, resize, rolled_back=rolled_back)

    record = _instance(ledger)
    assert (record.status, record.hold) == (InstanceStatus.SUSPENDED, Hold.SUSPENDED)
    assert record.last_error == "the StorageClass cannot expand"
    for verb in ("start", "restart", "provision"):
        refused = _refused(ledger, verb, 3)
        assert refused.code is RejectionCode.NOT_ALLOWED_IN_STATE
        assert "billing hold" in refused.message
    _run(ledger, "unsuspend", 4)
    record = _instance(ledger)
    assert (record.status, record.hold) == (InstanceStatus.RUNNING, None)


def test_a_backup_keeps_the_hold_while_it_works(ledger: Ledger) -> None:
    _suspended(ledger)
    backup = command(f"{T}backup.v1", seconds=2)
    _begin(ledger, backup)
    assert _instance(ledger).status is InstanceStatus.BACKING_UP
    assert _instance(ledger).hold is Hold.SUSPENDED
    _succeed(ledger, backup)
    record = _instance(ledger)
    assert (record.status, record.hold) == (InstanceStatus.SUSPENDED, Hold.SUSPENDED)


def test_a_suspend_holds_from_when_it_begins_even_if_it_fails(ledger: Ledger) -> None:
    _run(ledger, "provision", 0)
    suspend = command(f"{T}suspend.v1", seconds=1)
    _begin(ledger, suspend)
    assert _instance(ledger).hold is Hold.SUSPENDED
    _fail(ledger, suspend)  # e.g. its pods never went: billing's decision stands
    record = _instance(ledger)
    assert (record.status, record.hold) == (InstanceStatus.SUSPENDED, Hold.SUSPENDED)
    assert _refused(ledger, "start", 2).code is RejectionCode.NOT_ALLOWED_IN_STATE


def test_a_failed_unsuspend_or_delete_lifts_nothing(ledger: Ledger) -> None:
    _suspended(ledger)
    for seconds, verb in enumerate(("unsuspend", "delete", "terminate"), start=2):
        cmd = command(f"{T}{verb}.v1", seconds=seconds)
        _begin(ledger, cmd)
        _fail(ledger, cmd)
    # The failed terminate still took its hold: terminated, and only reactivate lifts it.
    record = _instance(ledger)
    assert (record.status, record.hold) == (InstanceStatus.TERMINATED, Hold.TERMINATED)
    assert _refused(ledger, "unsuspend", 5).code is RejectionCode.NOT_ALLOWED_IN_STATE
    _run(ledger, "reactivate", 6)
    assert (_instance(ledger).status, _instance(ledger).hold) == (InstanceStatus.RUNNING, None)


def test_a_command_that_never_began_changes_neither_status_nor_hold(ledger: Ledger) -> None:
    _suspended(ledger)
    start = command(f"{T}start.v1", seconds=2)  # failed before admission (delivery limit)
    _fail(ledger, start)
    record = _instance(ledger)
    assert (record.status, record.hold) == (InstanceStatus.SUSPENDED, Hold.SUSPENDED)


def test_the_watcher_never_changes_a_held_instance(ledger: Ledger, engine: Engine) -> None:
    _suspended(ledger)
    with Session(engine) as session, session.begin():  # a row as an old bug could leave it
        session.get_one(Instance, INSTANCE_ID).status = InstanceStatus.RUNNING
    data = StatusChangedData(
        instance_id=INSTANCE_ID, from_="running", to="degraded", reason="pods not Ready"
    )
    event = StatusChangedEvent.observed(data, correlationid=INSTANCE_ID)
    assert not ledger.record_observation(
        INSTANCE_ID, InstanceStatus.RUNNING, event, InstanceStatus.DEGRADED
    )
    assert _refused(ledger, "restart", 2).code is RejectionCode.NOT_ALLOWED_IN_STATE
