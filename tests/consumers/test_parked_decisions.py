"""The decision about a handler that waits (consumers/processing.py), on a real ledger, without
a broker: Park with its progress recorded and its continuation as the fallback, a resumed
delivery decided again within its first budget, and no parking where there is no room."""

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from consumers.delivery import Park, Retry
from consumers.headers import DELIVERY_COUNT_HEADER
from consumers.processing import Ack, Delivery, Processor
from handlers.jobs import finished
from handlers.results import Completed, HandlerContext, HandlerResult, Wait
from messages.amqp import AmqpProperties
from messages.commands import AnyCommand, InstanceCommand
from messages.settings import ContractSettings
from store.ledger import Ledger
from tests.catalog import MACHINE, registry_of
from tests.consumers.harness import FAST, provision_body, provisioned

PROVISION = "odoo.instance.provision.v1"


class Room:
    """Our Parking port: room or none."""

    def __init__(self, room: bool) -> None:
        self.room = room

    def has_room(self) -> bool:
        return self.room


@dataclass
class WaitsOnce:
    """Waits for a Job the first time, completes the next; keeps the contexts it was given."""

    contexts: list[HandlerContext] = field(default_factory=list)

    def __call__(self, command: AnyCommand, context: HandlerContext) -> HandlerResult:
        assert isinstance(command, InstanceCommand)
        self.contexts.append(context)
        if len(self.contexts) == 1:
            return Wait(
                step="waiting: initialise",
                waiting_for=finished("init-1"),
                until=time.time() + 20,
                after_seconds=1.0,
                result={"kubernetes_requests": 3},
            )
        return Completed(provisioned(command))


def _processor(engine: Engine, handler: Any, parking: Any) -> Processor:
    return Processor(
        Ledger(engine, MACHINE),
        registry_of({PROVISION: handler}),
        FAST,
        ContractSettings(),
        parking=parking,
    )


def test_a_waiting_handler_is_parked_with_its_step_recorded(engine: Engine) -> None:
    handler = WaitsOnce()
    processor = _processor(engine, handler, Room(True))
    _, body = provision_body(1)
    delivery = Delivery(body, AmqpProperties(), came_back=True)
    decision = processor.process(delivery)
    assert isinstance(decision, Park)
    assert handler.contexts[0].parks
    assert decision.waiting_for == finished("init-1")
    assert decision.deadline == handler.contexts[0].deadline
    # Its fallback is the continuation a Continue makes: through the delay queues, acked.
    assert isinstance(decision.otherwise, Retry)
    assert decision.otherwise.cause == "continue"
    assert decision.otherwise.reason == "continue at waiting: initialise"
    operation_id = handler.contexts[0].operation_id
    assert operation_id is not None
    recorded = processor.ledger.operation(operation_id)
    assert recorded.step == "waiting: initialise"
    assert recorded.result["kubernetes_requests"] == 3
    assert processor.ledger.outcome_of("provision-1") is None  # not answered: it waits

    # Resumed: the same delivery, decided again within the budget of its first decision.
    again = processor.process(decision.resumed(delivery))
    assert again == Ack("completed")
    assert handler.contexts[1].deadline == decision.deadline
    assert handler.contexts[1].operation_id == operation_id
    stored = processor.ledger.outcome_of("provision-1")
    assert stored is not None
    assert stored.outcome == "succeeded"


def test_without_room_the_handler_is_told_not_to_park(engine: Engine) -> None:
    handler = WaitsOnce()
    processor = _processor(engine, handler, Room(False))
    _, body = provision_body(2)
    processor.process(Delivery(body, AmqpProperties(), came_back=True))
    assert not handler.contexts[0].parks


def test_without_a_parking_lot_a_wait_continues_through_the_delay_queues(
    engine: Engine,
) -> None:
    handler = WaitsOnce()
    processor = _processor(engine, handler, None)
    _, body = provision_body(3)
    decision = processor.process(Delivery(body, AmqpProperties(), came_back=True))
    assert not handler.contexts[0].parks
    assert isinstance(decision, Retry)  # a runtime that cannot park never sees Park
    assert decision.cause == "continue"


def test_a_wait_redelivered_past_half_the_limit_continues_as_a_new_message(
    engine: Engine,
) -> None:
    """Crashes while it was parked count against its delivery limit; a handler that got as far
    as a wait did not cause them, so it is published anew (counted from zero), not parked."""
    half = FAST.delivery_limit // 2
    decisions = []
    for number, count in ((4, half - 1), (5, half)):
        _, body = provision_body(number)
        headers = {DELIVERY_COUNT_HEADER: count}
        delivery = Delivery(body, AmqpProperties(headers=headers), redelivered=True)
        decisions.append(_processor(engine, WaitsOnce(), Room(True)).process(delivery))
    below, past = decisions
    assert isinstance(below, Park)
    assert isinstance(past, Retry)
    assert (past.cause, past.reason) == ("continue", "continue at waiting: initialise")
