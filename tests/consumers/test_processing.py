"""The decisions of consumers/processing.py, on a real SQLite ledger, without a broker."""

import json
import time

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from consumers.headers import (
    BUSY_HEADER,
    DELIVERY_COUNT_HEADER,
    NOT_BEFORE_HEADER,
    RETRIES_HEADER,
    Counters,
    retry_headers,
)
from consumers.processing import Ack, DeadLetter, Delivery, Processor, Retry
from handlers.results import HandlerContext, HandlerResult
from messages.amqp import AmqpProperties
from messages.commands import AnyCommand
from messages.errors import RetryableError
from messages.examples import command_example
from messages.settings import ContractSettings
from store.database import is_postgresql
from store.ledger import Ledger
from tests.catalog import MACHINE, registry_of
from tests.consumers.harness import FAST, ProvisionFake, provision_body

PROVISION = "odoo.instance.provision.v1"


def _processor(engine: Engine, handler: object, **settings: object) -> Processor:
    return Processor(
        Ledger(engine, MACHINE),
        registry_of({PROVISION: handler}),  # type: ignore[dict-item]
        FAST.model_copy(update=settings),
        ContractSettings(),
    )


def _delivery(body: bytes, **headers: object) -> Delivery:
    """As if back from the service's own delay queue: its counters are believed."""
    return Delivery(body, AmqpProperties(headers=headers), came_back=True)


def _published(body: bytes, **headers: object) -> Delivery:
    """As a sender published it to instance.commands: its counters are the sender's."""
    return Delivery(
        body,
        AmqpProperties(headers=headers),
        exchange="instance.commands",
        routing_key=json.loads(body)["type"],
        queue=FAST.long_queue,
    )


def test_the_last_delivery_before_the_broker_limit_is_answered_failed(engine: Engine) -> None:
    fake = ProvisionFake()
    processor = _processor(engine, fake, delivery_limit=5)
    _, body = provision_body(1)
    decision = processor.process(
        Delivery(body, AmqpProperties(headers={DELIVERY_COUNT_HEADER: 4}), redelivered=True)
    )
    assert decision == DeadLetter(
        "failed:delivery_limit", "delivered 5 times without an outcome", PROVISION
    )
    assert fake.calls == {}
    stored = processor.ledger.outcome_of("provision-1")
    assert stored is not None
    assert stored.outcome == "failed"


def test_retryable_failures_end_after_the_configured_number(engine: Engine) -> None:
    def flaky(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        raise RetryableError("503")

    processor = _processor(engine, flaky, max_retries=2)
    _, body = provision_body(2)
    first = processor.process(_delivery(body))
    assert isinstance(first, Retry)
    assert first.counters == Counters(retries=1)
    assert isinstance(processor.process(_delivery(body, **first.counters.headers())), Retry)
    last = processor.process(_delivery(body, **{RETRIES_HEADER: 2}))
    assert isinstance(last, DeadLetter)
    assert last.code == "failed:retries_exhausted"


def test_a_message_not_due_yet_travels_on_without_touching_the_store(engine: Engine) -> None:
    processor = _processor(engine, ProvisionFake())
    due = int((time.time() + 3000) * 1000)
    decision = processor.process(_delivery(b"not even json", **{NOT_BEFORE_HEADER: due}))
    assert isinstance(decision, Retry)
    assert decision.delay > 2900
    assert decision.counters == Counters(not_before_ms=due)
    assert (decision.cause, decision.command_type) == ("not_due", "(unreadable)")


def test_a_refused_command_delivered_again_goes_to_the_dead_letters_again(
    engine: Engine,
) -> None:
    processor = _processor(engine, ProvisionFake())
    stop = command_example("odoo.instance.stop.v1")  # no such instance: unknown_instance
    body = json.dumps(stop).encode()
    assert isinstance(processor.process(_delivery(body)), DeadLetter)
    again = processor.process(_delivery(body))
    assert again == DeadLetter(
        "answered:rejected", "already answered; see its terminal event", "odoo.instance.stop.v1"
    )


def test_a_success_delivered_again_is_acknowledged(engine: Engine) -> None:
    fake = ProvisionFake()
    processor = _processor(engine, fake)
    _, body = provision_body(3)
    assert processor.process(_delivery(body)) == Ack("completed")
    assert isinstance(processor.process(_delivery(body)), Ack)
    assert fake.calls == {"provision-3": 1}


def test_busy_instances_back_off_without_spending_retries(engine: Engine) -> None:
    def never(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        pytest.fail("the handler must not run while the instance is held")

    processor = _processor(engine, never)
    _, body = provision_body(4)
    instance = json.loads(body)["subject"]
    with processor.ledger.locks.hold(instance):
        decision = processor.process(_delivery(body, **{BUSY_HEADER: 5}))
    assert isinstance(decision, Retry)
    assert decision.counters == Counters(busy=6)
    assert decision.delay <= FAST.retry_delays_seconds[-1]


def test_retry_headers_are_the_services_own_plus_the_trace_context() -> None:
    received = {
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
        "x-big": "x" * 100_000,  # copied, it could push the header frame past the limit
        DELIVERY_COUNT_HEADER: 2,
        NOT_BEFORE_HEADER: 9.0,
    }
    headers = retry_headers(Counters(retries=3), received)
    assert headers == {"traceparent": received["traceparent"], RETRIES_HEADER: 3}


@pytest.mark.parametrize(
    "forged",
    [
        {NOT_BEFORE_HEADER: 10**18},
        {NOT_BEFORE_HEADER: 1e18},
        {RETRIES_HEADER: 10**6},
        {"x-instance-service-unexpected-failures": 4},
        {DELIVERY_COUNT_HEADER: 49},
        {BUSY_HEADER: True},
    ],
)
def test_a_senders_own_counters_are_not_believed(engine: Engine, forged: dict[str, object]) -> None:
    fake = ProvisionFake()
    processor = _processor(engine, fake, delivery_limit=50, max_retries=2)
    command_id, body = provision_body(8)
    assert processor.process(_published(body, **forged)) == Ack("completed")
    assert fake.calls == {command_id: 1}


def test_a_not_before_from_a_delay_queue_is_capped_by_the_longest_delay(engine: Engine) -> None:
    processor = _processor(engine, ProvisionFake())
    decision = processor.process(_delivery(b"{}", **{NOT_BEFORE_HEADER: 10**18}))
    assert isinstance(decision, Retry)
    assert 3590 < decision.delay <= 3600
    assert decision.counters.not_before_ms <= int((time.time() + 3600) * 1000)


def test_a_type_other_than_the_routing_key_is_invalid(engine: Engine) -> None:
    processor = _processor(engine, ProvisionFake())
    _, body = provision_body(9)
    delivery = Delivery(
        body,
        AmqpProperties(),
        exchange="instance.commands",
        routing_key="odoo.instance.stop.v1",
        queue=FAST.quick_queue,
    )
    decision = processor.process(delivery)
    assert isinstance(decision, DeadLetter)
    assert decision.code == "invalid_data"
    assert "differs from the routing key" in decision.reason


def test_an_unknown_type_on_a_work_queue_is_handed_on_then_answered(engine: Engine) -> None:
    # Bound to a work queue by a newer version: handed on, until the retries run out.
    processor = _processor(engine, ProvisionFake(), max_retries=2)
    stop = command_example("odoo.instance.stop.v1")
    body = json.dumps({**stop, "type": "odoo.instance.hibernate.v1"}).encode()
    first = processor.process(Delivery(body, AmqpProperties(), queue=FAST.long_queue))
    assert isinstance(first, Retry)
    assert (first.cause, first.counters) == ("handed_on", Counters(retries=1))
    last = processor.process(
        Delivery(
            body, AmqpProperties(headers={RETRIES_HEADER: 2}), queue=FAST.long_queue, came_back=True
        )
    )
    assert isinstance(last, DeadLetter)
    assert last.code == "unsupported_type"
    # From the unrouted queue no version serves it: answered at once.
    unrouted = Delivery(
        json.dumps({**stop, "id": "other", "type": "odoo.instance.hibernate.v1"}).encode(),
        AmqpProperties(),
        queue=FAST.unrouted_queue,
    )
    assert processor.process(unrouted) == DeadLetter(
        "unsupported_type",
        'type "odoo.instance.hibernate.v1" is not a command this service accepts',
        "(unreadable)",
    )


def test_a_redelivery_that_runs_the_handler_again_says_so_with_its_count(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    fake = ProvisionFake()
    processor = _processor(engine, fake)
    _, body = provision_body(7)
    # A consumer died holding it: the broker hands it out again, counted.
    again = Delivery(body, AmqpProperties(headers={DELIVERY_COUNT_HEADER: 2}), redelivered=True)
    with caplog.at_level("INFO", logger="consumers.processing"):
        assert processor.process(again) == Ack("completed")
        processor.process(again)  # answered from the inbox: the handler does not run
    logged = [r for r in caplog.records if r.getMessage() == "command redelivered"]
    assert [(r.command_id, r.deliveries) for r in logged] == [("provision-7", 3)]  # type: ignore[attr-defined]
    assert fake.calls == {"provision-7": 1}


def test_a_quick_command_takes_four_transactions_of_the_store(engine: Engine) -> None:
    """The inbox before the lock, the inbox again under it, admission and operation together
    (Ledger.start), the outcome: four transactions (five while admit and begin were two). On
    PostgreSQL the instance lock takes and frees an advisory lock, two more."""
    processor = _processor(engine, ProvisionFake())
    _, body = provision_body(8)
    transactions: list[object] = []

    def count(connection: object) -> None:
        transactions.append(connection)

    lock = 2 if is_postgresql(engine) else 0
    event.listen(engine, "begin", count)
    try:
        assert processor.process(_delivery(body)) == Ack("completed")
        assert len(transactions) == 4 + lock
        transactions.clear()
        assert isinstance(processor.process(_delivery(body)), Ack)  # answered from the inbox
        assert len(transactions) == 1
    finally:
        event.remove(engine, "begin", count)
