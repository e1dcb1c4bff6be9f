"""Admission, operations and the one transaction that records an outcome, on both databases."""

import socket

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, RejectionCode, RetryableError
from messages.events import (
    CommandFailedData,
    CommandFailedEvent,
    CommandRejectedEvent,
    ErrorInfo,
    Event,
    InstanceEventData,
    ProvisionedData,
    ProvisionedEvent,
    SecretReference,
    StartedEvent,
)
from messages.examples import INSTANCE_ID
from store.database import StoreInterruptedError, create_engine
from store.ledger import Ledger
from store.lifecycle import InstanceStatus
from store.locks import AdvisoryLocks, InstanceBusyError
from store.models import InboxEntry, Operation, OutboxEntry
from store.records import InstanceUpdate, Outcome
from store.settings import StoreSettings
from tests.catalog import MACHINE
from tests.store.conftest import command

OTHER_ID = "11111111-2222-4333-8444-555555555555"


def _provisioned(cmd: AnyCommand) -> Event:
    assert isinstance(cmd, InstanceCommand)
    return ProvisionedEvent.caused_by(
        cmd,
        ProvisionedData(
            instance_id=cmd.subject,
            url="https://acme.example",
            internal_url="http://odoo.tenants.svc.cluster.local:8069",
            odoo_version="17.0",
            credentials_secret=SecretReference(namespace="tenants", name="odoo-x"),
        ),
    )


def _done(ledger: Ledger, cmd: AnyCommand, event: Event | None = None) -> None:
    """Run a command through admission to a successful outcome."""
    with ledger.exclusive(cmd):
        admission = ledger.admit(cmd)
        ledger.begin(cmd, admission)
        assert isinstance(cmd, InstanceCommand)
        terminal = event or StartedEvent.caused_by(cmd, InstanceEventData(instance_id=cmd.subject))
        ledger.record(cmd, Outcome.SUCCEEDED, terminal)


def _provision(ledger: Ledger, seconds: float = 0, instance_id: str = INSTANCE_ID) -> AnyCommand:
    cmd = command("odoo.instance.provision.v1", seconds=seconds, instance_id=instance_id)
    _done(ledger, cmd, _provisioned(cmd))
    return cmd


def _status(ledger: Ledger, instance_id: str) -> InstanceStatus:
    record = ledger.instance(instance_id)
    assert record is not None
    return record.status


def _count(engine: Engine, model: type[InboxEntry | OutboxEntry]) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_provision_records_instance_inbox_and_outbox(ledger: Ledger, engine: Engine) -> None:
    cmd = command("odoo.instance.provision.v1")
    assert ledger.outcome_of(cmd.id) is None
    admission = ledger.admit(cmd)
    assert admission.instance is None
    operation_id = ledger.begin(cmd, admission)
    record = ledger.instance(INSTANCE_ID)
    assert record is not None
    assert record.status is InstanceStatus.PROVISIONING
    assert record.current_operation_id == operation_id

    event = _provisioned(cmd)
    stored = ledger.record(cmd, Outcome.SUCCEEDED, event, update=InstanceUpdate(url="https://a"))

    assert stored.terminal_event_id == event.id
    assert ledger.outcome_of(cmd.id) == stored
    record = ledger.instance(INSTANCE_ID)
    assert record is not None
    assert record.status is InstanceStatus.RUNNING
    assert record.url == "https://a"
    assert record.current_operation_id is None
    with Session(engine) as session:
        outbox = session.scalars(select(OutboxEntry)).one()
        operation = session.get_one(Operation, operation_id)
    assert outbox.event_id == event.id
    assert outbox.routing_key == "odoo.instance.provisioned.v1"
    assert operation.state == "succeeded"


def test_a_recorded_command_returns_its_outcome_and_changes_nothing(
    ledger: Ledger, engine: Engine
) -> None:
    cmd = _provision(ledger)
    first = ledger.outcome_of(cmd.id)
    again = ledger.record(cmd, Outcome.SUCCEEDED, _provisioned(cmd))  # a new event id
    assert again == first
    assert _count(engine, OutboxEntry) == 1
    assert _count(engine, InboxEntry) == 1


def test_an_older_command_is_stale(ledger: Ledger) -> None:
    _provision(ledger, seconds=10)
    with pytest.raises(MessageRejected) as raised:
        ledger.admit(command("odoo.instance.stop.v1", seconds=5))
    assert raised.value.code is RejectionCode.STALE
    assert raised.value.command_id == "stop-5"


def test_start_while_suspended_is_not_allowed(ledger: Ledger) -> None:
    _provision(ledger)
    _done(ledger, command("odoo.instance.suspend.v1", seconds=1))
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.SUSPENDED
    with pytest.raises(MessageRejected) as raised:
        ledger.admit(command("odoo.instance.start.v1", seconds=2))
    assert raised.value.code is RejectionCode.NOT_ALLOWED_IN_STATE
    assert "instance is suspended" in raised.value.message
    _done(ledger, command("odoo.instance.unsuspend.v1", seconds=3))
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.RUNNING


def test_a_command_for_no_instance_is_unknown(ledger: Ledger) -> None:
    with pytest.raises(MessageRejected) as raised:
        ledger.admit(command("odoo.instance.start.v1"))
    assert raised.value.code is RejectionCode.UNKNOWN_INSTANCE


def test_commands_wait_while_an_operation_runs_and_the_operation_resumes(
    ledger: Ledger,
) -> None:
    _provision(ledger)
    restart = command("odoo.instance.restart.v1", seconds=1)
    operation_id = ledger.begin(restart, ledger.admit(restart))
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.RESTARTING

    with pytest.raises(InstanceBusyError):
        ledger.admit(command("odoo.instance.stop.v1", seconds=2))
    resumed = ledger.admit(restart)  # its own redelivery does not wait for itself
    assert resumed.operation_id == operation_id
    assert ledger.begin(restart, resumed) == operation_id


def test_provision_conflicts(ledger: Ledger) -> None:
    _provision(ledger)
    with pytest.raises(MessageRejected) as different:
        ledger.admit(command("odoo.instance.provision.v1", seconds=1, subdomain="other"))
    assert different.value.code is RejectionCode.CONFLICT
    with pytest.raises(MessageRejected) as taken:
        ledger.admit(command("odoo.instance.provision.v1", seconds=1, instance_id=OTHER_ID))
    assert taken.value.code is RejectionCode.CONFLICT
    assert [p.field for p in taken.value.details] == ["data.subdomain"]
    with pytest.raises(MessageRejected) as repeated:
        ledger.admit(command("odoo.instance.provision.v1", command_id="again", seconds=1))
    assert repeated.value.code is RejectionCode.NOT_ALLOWED_IN_STATE


def test_a_deleted_instance_frees_its_subdomain(ledger: Ledger) -> None:
    _provision(ledger)
    _done(ledger, command("odoo.instance.delete.v1", seconds=1))
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.DELETED
    _provision(ledger, seconds=2, instance_id=OTHER_ID)
    other = ledger.instance(OTHER_ID)
    assert other is not None
    assert other.subdomain == "acme"


def test_resize_returns_to_the_status_it_had(ledger: Ledger) -> None:
    _provision(ledger)
    _done(ledger, command("odoo.instance.stop.v1", seconds=1))
    resize = command("odoo.instance.resize.v1", seconds=2)
    with ledger.exclusive(resize):
        ledger.begin(resize, ledger.admit(resize))
        assert _status(ledger, INSTANCE_ID) is InstanceStatus.RESIZING
        ledger.record(
            resize,
            Outcome.SUCCEEDED,
            StartedEvent.caused_by(resize, InstanceEventData(instance_id=INSTANCE_ID)),
            update=InstanceUpdate(cpu_millicores=2000, storage_gib=40),
        )
    record = ledger.instance(INSTANCE_ID)
    assert record is not None
    assert record.status is InstanceStatus.STOPPED
    assert (record.cpu_millicores, record.storage_gib) == (2000, 40)


def test_a_failure_leaves_error_and_its_reason(ledger: Ledger) -> None:
    _provision(ledger)
    upgrade = command("odoo.instance.upgrade.v1", seconds=1)
    ledger.begin(upgrade, ledger.admit(upgrade))
    assert isinstance(upgrade, InstanceCommand)
    failed = CommandFailedData(
        instance_id=INSTANCE_ID,
        command_id=upgrade.id,
        command_type=upgrade.type,
        error=ErrorInfo(code="upgrade_failed", message="module update failed"),
        rolled_back=False,
    )
    ledger.record(
        upgrade,
        Outcome.FAILED,
        CommandFailedEvent.caused_by(upgrade, failed),
        update=InstanceUpdate(last_error="module update failed"),
    )
    record = ledger.instance(INSTANCE_ID)
    assert record is not None
    assert record.status is InstanceStatus.ERROR
    assert record.last_error == "module update failed"
    stored = ledger.outcome_of(upgrade.id)
    assert stored is not None
    assert stored.outcome is Outcome.FAILED


def test_a_rejection_is_recorded_without_touching_the_instance(
    ledger: Ledger, engine: Engine
) -> None:
    _provision(ledger, seconds=10)
    stale = command("odoo.instance.stop.v1", seconds=5)
    with pytest.raises(MessageRejected) as raised:
        ledger.admit(stale)
    event = CommandRejectedEvent.for_rejection(raised.value, subject=INSTANCE_ID)
    ledger.record(stale, Outcome.REJECTED, event)
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.RUNNING
    stored = ledger.outcome_of(stale.id)
    assert stored is not None
    assert stored.outcome is Outcome.REJECTED
    assert _count(engine, OutboxEntry) == 2


def test_outcome_state_and_events_commit_together_or_not_at_all(
    ledger: Ledger, engine: Engine
) -> None:
    first = _provision(ledger)
    stop = command("odoo.instance.stop.v1", seconds=1)
    ledger.begin(stop, ledger.admit(stop))
    # An event whose id is already in the outbox makes the transaction fail at its end.
    clash = StartedEvent.caused_by(stop, InstanceEventData(instance_id=INSTANCE_ID))
    first_outcome = ledger.outcome_of(first.id)
    assert first_outcome is not None
    clash = clash.model_copy(update={"id": first_outcome.terminal_event_id})
    with pytest.raises(IntegrityError):
        ledger.record(stop, Outcome.SUCCEEDED, clash)
    assert ledger.outcome_of(stop.id) is None
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.STOPPING
    assert _count(engine, OutboxEntry) == 1

    ledger.record(
        stop,
        Outcome.SUCCEEDED,
        StartedEvent.caused_by(stop, InstanceEventData(instance_id=INSTANCE_ID)),
    )
    assert _status(ledger, INSTANCE_ID) is InstanceStatus.STOPPED


def test_fleet_commands_need_no_instance(ledger: Ledger) -> None:
    reconcile = command("odoo.fleet.reconcile.v1")
    with ledger.exclusive(reconcile):
        admission = ledger.admit(reconcile)
        assert admission.instance is None
        assert ledger.begin(reconcile, admission) is None


def test_a_database_that_stops_answering_is_a_retryable_interruption() -> None:
    # A PostgreSQL URL on a port nobody listens on: the real driver fails to connect.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://nobody:nothing@127.0.0.1:{port}/state"
    engine = create_engine(StoreSettings(url=SecretStr(url)))
    try:
        with pytest.raises(StoreInterruptedError, match="state database unavailable") as raised:
            Ledger(engine, MACHINE).outcome_of("any-command")
        assert isinstance(raised.value, RetryableError)
        assert "nothing" not in str(raised.value)
        with pytest.raises(StoreInterruptedError), AdvisoryLocks(engine).hold("instance"):
            pass
    finally:
        engine.dispose()
