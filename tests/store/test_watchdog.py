"""The watchdog on the store, on both databases: an operation begins with its type's deadline
and keeps its command; past the deadline it is resumed (its command published again, through
our own publishing port), and if still overdue failed once, through the ledger's transaction."""

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from handlers.watchdog import TIMED_OUT, CommandNotPublishedError, Watchdog
from messages.amqp import OutgoingMessage
from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, RejectionCode
from messages.events import InstanceEventData, StartedEvent, SuspendedEvent
from messages.examples import INSTANCE_ID
from messages.serialization import COMMANDS_EXCHANGE, to_message
from messages.settings import ContractSettings
from store.ledger import Ledger
from store.lifecycle import InstanceStatus
from store.locks import InstanceBusyError
from store.models import InboxEntry, Operation, OutboxEntry, utcnow
from store.records import Outcome
from store.settings import OperationSettings
from store.watchdog import COMMAND_KEY, OpenOperations
from tests.catalog import MACHINE
from tests.store.conftest import command

RESTART = "odoo.instance.restart.v1"


class Publisher:
    """Our publishing port, keeping what it was given (or refusing, when told to)."""

    def __init__(self, refuse: bool = False) -> None:
        self.sent: list[OutgoingMessage] = []
        self.refuse = refuse

    def __call__(self, message: OutgoingMessage) -> None:
        if self.refuse:
            raise CommandNotPublishedError("the broker is away")
        self.sent.append(message)


class Clock:
    """A settable `now` for the watchdog."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def _running(ledger: Ledger) -> None:
    provision = command("odoo.instance.provision.v1")
    with ledger.exclusive(provision):
        ledger.begin(provision, ledger.admit(provision))
        assert isinstance(provision, InstanceCommand)
        event = StartedEvent.caused_by(provision, InstanceEventData(instance_id=INSTANCE_ID))
        ledger.record(provision, Outcome.SUCCEEDED, event)


def _begun(ledger: Ledger, cmd: AnyCommand) -> str:
    """Begin a command's operation and leave it open, as a lost continuation does."""
    with ledger.exclusive(cmd):
        operation_id = ledger.begin(cmd, ledger.admit(cmd))
    assert operation_id is not None
    return operation_id


def _events(engine: Engine, command_id: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        bodies = [json.loads(row.body) for row in session.query(OutboxEntry)]
    return [body for body in bodies if body.get("causationid") == command_id]


@pytest.fixture
def restart(ledger: Ledger) -> AnyCommand:
    """A restart of a running instance whose operation is left open."""
    _running(ledger)
    cmd = command(RESTART, seconds=1)
    _begun(ledger, cmd)
    return cmd


def test_an_operation_begins_with_its_types_deadline_and_keeps_its_command(
    engine: Engine,
) -> None:
    settings = OperationSettings(deadline_seconds={RESTART: 90})
    ledger = Ledger(engine, MACHINE, operations=settings)
    _running(ledger)
    cmd = command(RESTART, seconds=1)
    before = utcnow()
    operation_id = _begun(ledger, cmd)
    (seen,) = OpenOperations(engine, settings, MACHINE).all()
    assert seen.id == operation_id
    assert (seen.command_id, seen.kind, seen.resumes) == (cmd.id, RESTART, 0)
    assert before + timedelta(seconds=90) <= seen.deadline <= utcnow() + timedelta(seconds=90)
    assert seen.command == json.loads(to_message(cmd, COMMANDS_EXCHANGE).body)
    assert not seen.overdue(seen.deadline - timedelta(seconds=1))
    assert seen.overdue(seen.deadline)


def test_an_overdue_operation_is_resumed_then_timed_out_with_one_answer(
    ledger: Ledger, engine: Engine, restart: AnyCommand
) -> None:
    clock, publish = Clock(), Publisher()
    watchdog = Watchdog(ledger, ContractSettings(), clock)
    (seen,) = watchdog.operations.all()

    clock.now = seen.deadline - timedelta(seconds=1)
    assert watchdog.sweep(publish).resumed == []  # not yet

    clock.now = seen.deadline + timedelta(seconds=1)
    assert watchdog.sweep(publish).resumed == [restart.id]
    # Sent again exactly as first published: to instance.commands, its type as routing key.
    assert publish.sent == [to_message(restart, COMMANDS_EXCHANGE)]
    (resumed,) = watchdog.operations.all()
    assert resumed.resumes == 1
    assert resumed.deadline >= clock.now + timedelta(seconds=1800)  # its type's, from now
    assert watchdog.sweep(publish).resumed == []  # a new deadline: nothing more for now
    record = ledger.instance(INSTANCE_ID)
    assert record is not None
    assert record.status is InstanceStatus.RESTARTING

    clock.now = resumed.deadline
    assert watchdog.sweep(publish).timed_out == [restart.id]  # still overdue: failed
    assert len(publish.sent) == 1
    stored = ledger.outcome_of(restart.id)
    assert stored is not None
    assert stored.outcome is Outcome.FAILED
    (event,) = _events(engine, restart.id)
    assert event["type"] == "odoo.instance.command.failed.v1"
    assert event["id"] == stored.terminal_event_id
    assert event["correlationid"] == restart.correlationid
    assert event["data"]["error"]["code"] == TIMED_OUT
    assert event["data"]["rolled_back"] is False
    assert "step 'started'" in event["data"]["error"]["message"]
    record = ledger.instance(INSTANCE_ID)
    assert record is not None
    assert record.status is InstanceStatus.ERROR
    assert record.current_operation_id is None
    assert record.last_error is not None
    assert TIMED_OUT not in record.last_error  # the message, the code is in the event
    with Session(engine) as session:
        operation = session.query(Operation).filter_by(command_id=restart.id).one()
        assert operation.state == "failed"

    clock.now += timedelta(days=1)
    done = watchdog.sweep(publish)
    assert (done.resumed, done.timed_out) == ([], [])
    assert len(_events(engine, restart.id)) == 1
    # The instance takes commands again (a restart from `error` is allowed).
    later = command(RESTART, seconds=2, command_id="restart-later")
    assert ledger.admit(later).instance is not None


def test_an_operation_whose_instance_a_consumer_holds_is_not_lost(
    ledger: Ledger, restart: AnyCommand
) -> None:
    clock, publish = Clock(), Publisher()
    watchdog = Watchdog(ledger, ContractSettings(), clock)
    clock.now = watchdog.operations.all()[0].deadline
    with ledger.exclusive(restart):
        done = watchdog.sweep(publish)
    assert done.busy == [restart.id]
    assert (publish.sent, done.resumed, done.timed_out) == ([], [], [])
    assert watchdog.operations.all()[0].resumes == 0


def test_a_command_the_broker_did_not_take_is_not_counted_as_resumed(
    ledger: Ledger, restart: AnyCommand
) -> None:
    clock = Clock()
    watchdog = Watchdog(ledger, ContractSettings(), clock)
    clock.now = watchdog.operations.all()[0].deadline
    assert watchdog.sweep(Publisher(refuse=True)).unpublished == [restart.id]
    assert watchdog.sweep(None).unpublished == [restart.id]  # no connection at all
    assert watchdog.operations.all()[0].resumes == 0
    assert ledger.outcome_of(restart.id) is None
    assert watchdog.sweep(Publisher()).resumed == [restart.id]


def test_with_no_resumes_an_overdue_operation_is_failed_at_once(engine: Engine) -> None:
    ledger = Ledger(engine, MACHINE, operations=OperationSettings(resumes=0))
    _running(ledger)
    cmd = command(RESTART, seconds=1)
    _begun(ledger, cmd)
    clock, publish = Clock(), Publisher()
    watchdog = Watchdog(ledger, ContractSettings(), clock)
    clock.now = watchdog.operations.all()[0].deadline
    assert watchdog.sweep(publish).timed_out == [cmd.id]
    assert publish.sent == []


def test_an_operation_begun_before_deadlines_were_written_is_failed_from_its_start(
    ledger: Ledger, engine: Engine, restart: AnyCommand
) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            update(Operation)
            .where(Operation.command_id == restart.id)
            .values(deadline=None, result={})
        )
        created = session.query(Operation).filter_by(command_id=restart.id).one().created_at
    clock, publish = Clock(), Publisher()
    watchdog = Watchdog(ledger, ContractSettings(), clock)
    (seen,) = watchdog.operations.all()
    assert seen.command is None
    assert seen.deadline == created + timedelta(seconds=1800)
    clock.now = seen.deadline
    # Its command was not kept, so it cannot be sent again: answered from what was recorded.
    assert watchdog.sweep(publish).timed_out == [restart.id]
    assert publish.sent == []
    (event,) = _events(engine, restart.id)
    assert event["data"]["command_id"] == restart.id
    assert event["data"]["command_type"] == RESTART
    assert event["subject"] == INSTANCE_ID
    assert event["correlationid"] == restart.id
    with Session(engine) as session:
        assert session.get_one(InboxEntry, restart.id).outcome == "failed"


def test_a_command_todays_contract_refuses_is_not_sent_again(
    engine: Engine, ledger: Ledger, restart: AnyCommand
) -> None:
    with Session(engine) as session, session.begin():
        operation = session.query(Operation).filter_by(command_id=restart.id).one()
        document = dict(operation.result[COMMAND_KEY])
        document["data"] = {**document["data"], "unexpected": True}
        operation.result = {**operation.result, COMMAND_KEY: document}
    clock, publish = Clock(), Publisher()
    watchdog = Watchdog(ledger, ContractSettings(), clock)
    clock.now = watchdog.operations.all()[0].deadline
    # The consumer would reject it and leave the operation open: failed instead.
    assert watchdog.sweep(publish).timed_out == [restart.id]
    assert publish.sent == []
    (event,) = _events(engine, restart.id)
    assert event["correlationid"] == restart.correlationid  # read from what was kept


def test_a_busy_admission_waits_for_the_operation_the_watchdog_ends(
    ledger: Ledger, restart: AnyCommand
) -> None:
    stop = command("odoo.instance.stop.v1", seconds=3)
    with pytest.raises(InstanceBusyError):
        ledger.admit(stop)  # frozen behind the open operation
    clock = Clock()
    watchdog = Watchdog(ledger, ContractSettings(), clock)
    clock.now = watchdog.operations.all()[0].deadline + timedelta(days=1)
    watchdog.sweep(Publisher())
    clock.now += timedelta(days=1)
    watchdog.sweep(Publisher())
    assert ledger.admit(stop).transition is not None


def test_a_held_instance_rests_in_its_hold_after_a_time_out(ledger: Ledger) -> None:
    _running(ledger)
    suspend = command("odoo.instance.suspend.v1", seconds=1)
    with ledger.exclusive(suspend):
        ledger.begin(suspend, ledger.admit(suspend))
        assert isinstance(suspend, InstanceCommand)
        event = SuspendedEvent.caused_by(suspend, InstanceEventData(instance_id=INSTANCE_ID))
        ledger.record(suspend, Outcome.SUCCEEDED, event)
    backup = command("odoo.instance.backup.v1", seconds=2)
    _begun(ledger, backup)  # a backup of the suspended instance, its continuation lost
    clock = Clock()
    watchdog = Watchdog(ledger, ContractSettings(), clock)
    clock.now = watchdog.operations.all()[0].deadline + timedelta(days=1)
    watchdog.sweep(Publisher())
    clock.now += timedelta(days=1)
    assert watchdog.sweep(Publisher()).timed_out == [backup.id]
    record = ledger.instance(INSTANCE_ID)
    assert record is not None
    assert record.status is InstanceStatus.SUSPENDED  # not `error`, from which start serves
    for verb in ("start", "restart"):
        with pytest.raises(MessageRejected) as refused:
            ledger.admit(command(f"odoo.instance.{verb}.v1", seconds=3))
        assert refused.value.code is RejectionCode.NOT_ALLOWED_IN_STATE
    assert ledger.admit(command("odoo.instance.unsuspend.v1", seconds=3)).transition is not None
