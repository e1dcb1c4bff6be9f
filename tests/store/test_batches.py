"""Many commands in one transaction (`start_many`, `record_many`, `outcomes_of`) decide and
write exactly what the same commands do one by one, on both databases."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.engine import Engine

from messages.commands import AnyCommand, InstanceCommand
from messages.errors import MessageRejected, RejectionCode
from messages.events import (
    CommandFailedData,
    CommandFailedEvent,
    CommandRejectedEvent,
    ErrorInfo,
    Event,
    InstanceEventData,
    StartedEvent,
)
from messages.examples import INSTANCE_ID
from store.ledger import Ledger, Record, Started, StartResult
from store.locks import InstanceBusyError
from store.models import Backup, InboxEntry, Instance, Operation, OutboxEntry
from store.outbox import Claim, OutboxRelayStore
from store.records import InstanceUpdate, Outcome
from tests.store.conftest import command
from tests.store.test_ledger import OTHER_ID, _count, _provisioned

THIRD_ID = "22222222-3333-4444-8555-666666666666"
FOURTH_ID = "33333333-4444-4555-8666-777777777777"


def _answer(cmd: AnyCommand, outcome: Outcome) -> Event:
    """The terminal event of a command ending so (one event object per command and outcome,
    so both runs write the same event ids)."""
    assert isinstance(cmd, InstanceCommand)
    if outcome is Outcome.FAILED:
        data = CommandFailedData(
            instance_id=cmd.subject,
            command_id=cmd.id,
            command_type=cmd.type,
            error=ErrorInfo(code="broken", message="it broke"),
            rolled_back=False,
        )
        return CommandFailedEvent.caused_by(cmd, data)
    if cmd.type == "odoo.instance.provision.v1":
        return _provisioned(cmd)
    return StartedEvent.caused_by(cmd, InstanceEventData(instance_id=cmd.subject))


class Script:
    """Rounds of commands: each round starts its commands, then records an outcome for every
    one that started (`ending` says how, default success) and a rejection for every refusal."""

    def __init__(self, ending: dict[str, Outcome]) -> None:
        self.ending = ending
        self.events: dict[tuple[str, Outcome], Event] = {}
        self.rejections: dict[str, Event] = {}

    def records(
        self, commands: Sequence[AnyCommand], results: Sequence[StartResult]
    ) -> list[Record]:
        """What a consumer records after these starts (a busy command records nothing)."""
        records = []
        for cmd, result in zip(commands, results, strict=True):
            assert isinstance(cmd, InstanceCommand)
            if isinstance(result, MessageRejected):
                event = self.rejections.setdefault(
                    cmd.id, CommandRejectedEvent.for_rejection(result, subject=cmd.subject)
                )
                records.append(Record(cmd, Outcome.REJECTED, event))
            elif isinstance(result, Started):
                outcome = self.ending.get(cmd.id, Outcome.SUCCEEDED)
                event = self.events.setdefault((cmd.id, outcome), _answer(cmd, outcome))
                update = InstanceUpdate(url=f"https://{cmd.id}.example", last_error="it broke")
                records.append(Record(cmd, outcome, event, update))
        return records


def _rounds() -> list[list[AnyCommand]]:
    provision = command("odoo.instance.provision.v1", seconds=0)
    return [
        [
            provision,
            command(
                "odoo.instance.provision.v1",
                command_id="provision-b",
                instance_id=OTHER_ID,
                subdomain="beta",
            ),
            # A's subdomain, taken by the provision before it in this very batch: conflict.
            command("odoo.instance.provision.v1", command_id="provision-c", instance_id=THIRD_ID),
            # A is provisioning since the first command of the batch: wait.
            command("odoo.instance.start.v1", seconds=1),
            provision,  # delivered twice in one batch: resumes its own operation
            command("odoo.instance.stop.v1", command_id="stop-d", instance_id=FOURTH_ID),  # unknown
        ],
        [
            command("odoo.instance.stop.v1", seconds=2),
            command("odoo.instance.restart.v1", seconds=1.5, instance_id=OTHER_ID),
            provision,  # answered already (and stale now)
        ],
        [
            command("odoo.instance.start.v1", seconds=1.5),  # stale: stop was at 2
            command("odoo.instance.start.v1", seconds=4),
            command("odoo.instance.suspend.v1", seconds=5, instance_id=OTHER_ID),
            command("odoo.instance.start.v1", seconds=6, instance_id=OTHER_ID),  # suspending
        ],
        [
            command("odoo.instance.start.v1", seconds=7, instance_id=OTHER_ID),  # held
            command("odoo.instance.resize.v1", seconds=8, instance_id=OTHER_ID, plan=_small()),
            command("odoo.instance.unsuspend.v1", seconds=9, instance_id=OTHER_ID),
        ],
    ]


def _small() -> dict[str, int]:
    return {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 1}


ENDING = {"restart-1.5": Outcome.FAILED}


def _one_by_one(ledger: Ledger, script: Script) -> list[Any]:
    answers: list[Any] = []
    for commands in _rounds():
        results: list[StartResult] = []
        for cmd in commands:
            try:
                results.append(ledger.start(cmd))
            except (MessageRejected, InstanceBusyError) as refused:
                results.append(refused)
        stored = [
            ledger.record(
                r.command, r.outcome, r.terminal, update=r.update, more_events=r.more_events
            )
            for r in script.records(commands, results)
        ]
        answers.append(([_comparable(ledger, r) for r in results], stored))
    return answers


def _in_batches(ledger: Ledger, script: Script) -> list[Any]:
    answers: list[Any] = []
    for commands in _rounds():
        results = ledger.start_many(commands)
        recorded = ledger.record_many(script.records(commands, results))
        answers.append(([_comparable(ledger, r) for r in results], [r.stored for r in recorded]))
    return answers


def _comparable(ledger: Ledger, result: StartResult) -> tuple[Any, ...]:
    if isinstance(result, MessageRejected):
        return ("rejected", result.code, result.message, result.command_id)
    if isinstance(result, InstanceBusyError):
        return ("busy", result.key)
    instance = result.admission.instance
    status = (instance.status, instance.hold, instance.url) if instance else None
    operation = ledger.operation(result.operation_id) if result.operation_id else None
    return ("started", status, operation.command_id if operation else None)


def _tables(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row the ledger wrote, without the times and generated ids that differ by run."""
    with engine.connect() as connection:
        operations = {r.id: r.command_id for r in connection.execute(select(_t(Operation)))}

        def rows(model: type[Any], order: str, drop: set[str]) -> list[dict[str, Any]]:
            table = _t(model)
            found = connection.execute(select(table).order_by(table.c[order]))
            return [
                {
                    k: operations.get(v, v) if k in ("id", "current_operation_id") else v
                    for k, v in row._mapping.items()
                    if k not in drop
                }
                for row in found
            ]

        times = {"created_at", "updated_at", "recorded_at", "deadline"}
        return {
            "instances": rows(Instance, "id", times),
            "operations": rows(Operation, "command_id", times),
            "inbox": rows(InboxEntry, "command_id", times),
            "outbox": rows(OutboxEntry, "seq", {*times, "seq"}),
        }


def _t(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


def _wipe(engine: Engine) -> None:
    with engine.begin() as connection:
        for model in (OutboxEntry, InboxEntry, Operation, Backup, Instance):
            connection.execute(delete(_t(model)))


def test_batches_leave_the_same_rows_and_answers_as_one_by_one(
    ledger: Ledger, engine: Engine
) -> None:
    script = Script(ENDING)
    one_by_one = _one_by_one(ledger, script)
    rows = _tables(engine)
    _wipe(engine)
    in_batches = _in_batches(ledger, script)

    assert in_batches == one_by_one
    assert _tables(engine) == rows
    # The script is what it says, so the comparison above covers each of these cases.
    kinds = [[answer[0] for answer in started] for started, _ in in_batches]
    assert kinds == [
        ["started", "started", "rejected", "busy", "started", "rejected"],
        ["started", "started", "rejected"],
        ["rejected", "started", "started", "busy"],
        ["rejected", "rejected", "started"],
    ]
    codes = [
        answer[1] for started, _ in in_batches for answer in started if answer[0] == "rejected"
    ]
    assert codes == [
        RejectionCode.CONFLICT,  # the subdomain the batch's first provision took
        RejectionCode.UNKNOWN_INSTANCE,
        RejectionCode.STALE,
        RejectionCode.STALE,
        RejectionCode.NOT_ALLOWED_IN_STATE,  # held by the suspend of the round before
        RejectionCode.INVALID_DATA,  # storage would shrink
    ]
    assert in_batches[0][0][4][2] == "provision-0", "the duplicate resumed its own operation"
    outcomes = [[stored.outcome for stored in recorded] for _, recorded in in_batches]
    assert outcomes[0] == [S, S, R, S, R]  # the duplicate's record answers the first one's
    assert outcomes[1] == [S, Outcome.FAILED, S]  # provision-0 was answered before
    other = ledger.instance(OTHER_ID)
    assert other is not None
    assert (other.status, other.hold) == ("running", None)


S, R = Outcome.SUCCEEDED, Outcome.REJECTED


def test_a_refused_command_writes_nothing_and_the_others_go_on(
    ledger: Ledger, engine: Engine
) -> None:
    stale_first = command("odoo.instance.provision.v1", seconds=5)
    ledger.record(stale_first, Outcome.SUCCEEDED, _provisioned(stale_first))
    commands = [
        command("odoo.instance.start.v1", seconds=1, instance_id=OTHER_ID),  # unknown
        command("odoo.instance.provision.v1", seconds=1, instance_id=THIRD_ID, subdomain="gamma"),
    ]
    results = ledger.start_many(commands)

    assert isinstance(results[0], MessageRejected)
    assert results[0].code is RejectionCode.UNKNOWN_INSTANCE
    assert isinstance(results[1], Started)
    assert ledger.instance(OTHER_ID) is None
    third = ledger.instance(THIRD_ID)
    assert third is not None
    assert third.status == "provisioning"
    assert _count(engine, InboxEntry) == 1  # starting records no outcome


def test_record_many_answers_a_recorded_id_with_its_outcome_and_writes_nothing(
    ledger: Ledger, engine: Engine
) -> None:
    provision = command("odoo.instance.provision.v1")
    ledger.start(provision)
    first = ledger.record_many([Record(provision, Outcome.SUCCEEDED, _provisioned(provision))])
    assert [e.event_id for e in first[0].events] == [first[0].stored.terminal_event_id]
    again = _provisioned(provision)  # a new event id: it must not be written
    stop = command("odoo.instance.stop.v1", seconds=1)
    ledger.start(stop)
    stopped = _answer(stop, Outcome.SUCCEEDED)
    more = StartedEvent.caused_by(stop, InstanceEventData(instance_id=INSTANCE_ID))
    second = ledger.record_many(
        [
            Record(provision, Outcome.SUCCEEDED, again),
            Record(stop, Outcome.SUCCEEDED, stopped, more_events=(more,)),
            Record(stop, Outcome.FAILED, _answer(stop, Outcome.FAILED)),  # twice in one batch
        ]
    )

    assert second[0].stored == first[0].stored
    assert second[0].events == ()
    assert [e.event_id for e in second[1].events] == [stopped.id, more.id]
    assert second[2].stored == second[1].stored
    assert second[2].events == ()
    assert _count(engine, OutboxEntry) == 3
    assert _count(engine, InboxEntry) == 2
    with engine.connect() as connection:
        written = connection.execute(
            select(_t(OutboxEntry).c.seq, _t(OutboxEntry).c.event_id).order_by("seq")
        ).all()
    published = [*first[0].events, *second[1].events]
    assert [(e.seq, e.event_id) for e in published] == [tuple(row) for row in written]
    assert published[1].ready_at is None
    assert published[1].routing_key == "odoo.instance.started.v1"


def test_outcomes_of_answers_for_the_ids_that_have_one(ledger: Ledger) -> None:
    provision = command("odoo.instance.provision.v1")
    ledger.start(provision)
    stored = ledger.record(provision, Outcome.SUCCEEDED, _provisioned(provision))
    assert ledger.outcomes_of([provision.id, "never-seen", provision.id]) == {provision.id: stored}
    assert ledger.outcomes_of([]) == {}


def test_events_written_claimed_are_left_to_their_publisher_until_the_claim_expires(
    ledger: Ledger, engine: Engine
) -> None:
    relay = OutboxRelayStore(engine)
    first = command("odoo.instance.provision.v1")
    second = command(
        "odoo.instance.provision.v1",
        command_id="provision-b",
        instance_id=OTHER_ID,
        subdomain="beta",
    )
    assert all(isinstance(s, Started) for s in ledger.start_many([first, second]))
    mine = ledger.record_many(
        [Record(first, Outcome.SUCCEEDED, _provisioned(first))], claim=Claim("runtime-1", 30)
    )
    assert relay.claim() == [], "a relay must not publish what its publisher holds"
    relay.mark_published([e.event_id for e in mine[0].events])  # the publisher's confirm
    assert relay.backlog() == 0

    lapsed = ledger.record_many(
        [Record(second, Outcome.SUCCEEDED, _provisioned(second))],
        claim=Claim("runtime-2", 0),  # its publisher died at once: the claim has lapsed
    )
    assert [e.event_id for e in relay.claim()] == [e.event_id for e in lapsed[0].events]
