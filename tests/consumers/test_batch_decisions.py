"""Batches of deliveries decided together (consumers/batch.py), on a real store, without a
broker: each delivery gets the answer it would get alone, and the store's work is shared."""

import json
import uuid

from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from consumers.headers import Counters
from consumers.processing import Ack, DeadLetter, Decision, Delivery, Processor, Retry
from handlers.results import Completed, Handler, HandlerContext, HandlerResult
from messages.amqp import AmqpProperties
from messages.commands import AnyCommand, InstanceCommand
from messages.errors import PermanentError
from messages.events import InstanceEventData, RestartedEvent
from messages.publishing import build_command
from messages.settings import ContractSettings
from store.database import is_postgresql
from store.ledger import Ledger
from store.models import OutboxEntry
from tests.catalog import MACHINE, registry_of
from tests.consumers.harness import FAST, ProvisionFake, provision_body

PROVISION = "odoo.instance.provision.v1"
RESTART = "odoo.instance.restart.v1"


def _processor(engine: Engine, handlers: dict[str, Handler]) -> Processor:
    return Processor(Ledger(engine, MACHINE), registry_of(handlers), FAST, ContractSettings())


def _delivery(body: bytes) -> Delivery:
    return Delivery(body, AmqpProperties(), queue=FAST.quick_queue)


def _restart_body(index: int, command_id: str) -> bytes:
    instance_id = str(uuid.UUID(int=index + 1, version=4))
    message = build_command(
        RESTART, {"instance_id": instance_id}, source="/tests", command_id=command_id
    )
    return message.body


def _restarted(command: AnyCommand, context: HandlerContext) -> HandlerResult:
    assert isinstance(command, InstanceCommand)
    data = InstanceEventData(instance_id=command.subject)
    return Completed(RestartedEvent.caused_by(command, data))


def _events(engine: Engine) -> list[tuple[str, str]]:
    """The outbox as (routing key, causing command id), in the order it was written."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(OutboxEntry.routing_key, OutboxEntry.body).order_by(OutboxEntry.seq)
        ).all()
    return [(key, json.loads(body)["causationid"]) for key, body in rows]


def _mixed(
    engine: Engine, run: str, offset: int
) -> tuple[Processor, ProvisionFake, list[Delivery]]:
    """Successes, a failure, a rejection and a malformed message; command ids start `run`."""
    fake = ProvisionFake()

    def provision(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        if command.id == f"{run}-provision-2":
            raise PermanentError("quota", "no room for it", rolled_back=True)
        return fake(command, context)

    processor = _processor(engine, {PROVISION: provision, RESTART: _restarted})
    bodies = [provision_body(offset + i, f"{run}-provision-{i}")[1] for i in range(5)]
    bodies.insert(3, _restart_body(99, f"{run}-restart"))  # no such instance: rejected
    bodies.insert(1, b"not json")  # refused before it is a command
    return processor, fake, [_delivery(body) for body in bodies]


def test_a_batch_answers_each_delivery_as_one_at_a_time_would(engine: Engine) -> None:
    processor, fake, deliveries = _mixed(engine, "batch", 0)
    together = processor.process_batch(deliveries)

    assert [type(decision) for decision in together] == [
        Ack, DeadLetter, Ack, DeadLetter, DeadLetter, Ack, Ack
    ]  # fmt: skip
    assert [d.code for d in together if isinstance(d, DeadLetter)] == [
        "malformed",
        "failed:quota",
        "unknown_instance",
    ]
    assert fake.calls == {f"batch-provision-{i}": 1 for i in (0, 1, 3, 4)}
    events = _events(engine)
    assert sorted(events) == sorted(
        [("odoo.instance.provisioned.v1", f"batch-provision-{i}") for i in (0, 1, 3, 4)]
        + [("odoo.instance.command.failed.v1", "batch-provision-2")]
        + [("odoo.instance.command.rejected.v1", "batch-restart")]
    )
    for command_id, outcome in [
        ("batch-provision-0", "succeeded"),
        ("batch-provision-2", "failed"),
        ("batch-restart", "rejected"),
    ]:
        stored = processor.ledger.outcome_of(command_id)
        assert stored is not None
        assert stored.outcome == outcome

    # The same kind of deliveries one at a time (other ids, same store): the same answers.
    alone_processor, _, alone_deliveries = _mixed(engine, "alone", 50)
    alone = [alone_processor.process(delivery) for delivery in alone_deliveries]
    assert alone == together
    assert sorted(
        (key, cause.replace("alone-", "batch-")) for key, cause in _events(engine)[len(events) :]
    ) == sorted(events)

    # Again, together: every answer from the inbox, no handler runs again, nothing written.
    again = processor.process_batch(deliveries)
    assert [type(decision) for decision in again] == [type(d) for d in together]
    assert fake.calls == {f"batch-provision-{i}": 1 for i in (0, 1, 3, 4)}
    assert len(_events(engine)) == 2 * len(events)


def test_a_duplicate_in_one_batch_runs_once(engine: Engine) -> None:
    fake = ProvisionFake()
    processor = _processor(engine, {PROVISION: fake})
    _, body = provision_body(10)
    first, second = processor.process_batch([_delivery(body), _delivery(body)])
    assert first == Ack("completed")
    assert isinstance(second, Retry)
    assert second.cause == "busy"
    assert second.counters == Counters(busy=1)
    assert fake.calls == {"provision-10": 1}
    # It comes back: answered from the inbox, one terminal event in all.
    assert processor.process(_delivery(body)) == Ack(
        "already answered (succeeded); nothing repeated"
    )
    assert _events(engine) == [("odoo.instance.provisioned.v1", "provision-10")]


def test_a_second_command_of_one_instance_waits_busy_and_runs_after(engine: Engine) -> None:
    fake = ProvisionFake()
    restarts: list[str] = []

    def restart(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        restarts.append(command.id)
        return _restarted(command, context)

    processor = _processor(engine, {PROVISION: fake, RESTART: restart})
    _, provision = provision_body(11)
    restart_body = _restart_body(11, "restart-11")
    decisions = processor.process_batch([_delivery(provision), _delivery(restart_body)])
    assert decisions[0] == Ack("completed")
    assert isinstance(decisions[1], Retry)
    assert decisions[1].cause == "busy"
    assert restarts == []
    assert processor.process(_delivery(restart_body)) == Ack("completed")
    assert restarts == ["restart-11"]
    assert _events(engine) == [
        ("odoo.instance.provisioned.v1", "provision-11"),
        ("odoo.instance.restarted.v1", "restart-11"),
    ]


def test_a_batch_shares_the_stores_transactions(engine: Engine) -> None:
    """Ten quick commands take the transactions one takes: the inbox before the locks and
    again under them, admission, the outcomes (on PostgreSQL two more: the locks)."""
    processor = _processor(engine, {PROVISION: ProvisionFake()})
    deliveries = [_delivery(provision_body(20 + index)[1]) for index in range(10)]
    transactions: list[object] = []

    def count(connection: object) -> None:
        transactions.append(connection)

    event.listen(engine, "begin", count)
    try:
        decisions: list[Decision] = processor.process_batch(deliveries)
    finally:
        event.remove(engine, "begin", count)
    assert decisions == [Ack("completed")] * 10
    assert len(transactions) == 4 + (2 if is_postgresql(engine) else 0)
    assert len(_events(engine)) == 10
