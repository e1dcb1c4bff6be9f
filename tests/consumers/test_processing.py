"""The decisions of consumers/processing.py, on a real SQLite ledger, without a broker."""

import json
import time

import pytest
from sqlalchemy.engine import Engine

from consumers.processing import (
    BUSY_HEADER,
    DELIVERY_COUNT_HEADER,
    NOT_BEFORE_HEADER,
    RETRIES_HEADER,
    Ack,
    DeadLetter,
    Delivery,
    Processor,
    Retry,
    headers_for_retry,
)
from handlers.results import HandlerContext, HandlerResult
from instance_service.wiring import build_registry
from messages.amqp import AmqpProperties
from messages.commands import AnyCommand
from messages.errors import RetryableError
from messages.examples import command_example
from messages.settings import ContractSettings
from store.ledger import Ledger
from tests.consumers.harness import FAST, ProvisionFake, provision_body

PROVISION = "odoo.instance.provision.v1"


def _processor(engine: Engine, handler: object, **settings: object) -> Processor:
    return Processor(
        Ledger(engine),
        build_registry({PROVISION: handler}),  # type: ignore[dict-item]
        FAST.model_copy(update=settings),
        ContractSettings(),
    )


def _delivery(body: bytes, **headers: object) -> Delivery:
    return Delivery(body, AmqpProperties(headers=headers))


def test_the_last_delivery_before_the_broker_limit_is_answered_failed(engine: Engine) -> None:
    fake = ProvisionFake()
    processor = _processor(engine, fake, delivery_limit=5)
    _, body = provision_body(1)
    decision = processor.process(_delivery(body, **{DELIVERY_COUNT_HEADER: 4}))
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
    assert first.headers == {RETRIES_HEADER: 1}
    assert isinstance(processor.process(_delivery(body, **first.headers)), Retry)
    last = processor.process(_delivery(body, **{RETRIES_HEADER: 2}))
    assert isinstance(last, DeadLetter)
    assert last.code == "failed:retries_exhausted"


def test_a_message_not_due_yet_travels_on_without_touching_the_store(engine: Engine) -> None:
    processor = _processor(engine, ProvisionFake())
    due = time.time() + 3600
    decision = processor.process(_delivery(b"not even json", **{NOT_BEFORE_HEADER: due}))
    assert isinstance(decision, Retry)
    assert decision.delay > 3500
    assert decision.headers == {NOT_BEFORE_HEADER: due}
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
    assert decision.headers == {BUSY_HEADER: 6}
    assert decision.delay <= FAST.retry_delays_seconds[-1]


def test_retry_headers_keep_others_and_drop_the_brokers_count() -> None:
    decision = Retry(1.0, "x", {RETRIES_HEADER: 3})
    headers = headers_for_retry(
        decision, {"traceparent": "t", DELIVERY_COUNT_HEADER: 2, NOT_BEFORE_HEADER: 9.0}
    )
    assert headers == {"traceparent": "t", RETRIES_HEADER: 3}


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
