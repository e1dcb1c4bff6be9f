"""The consumer's metrics against the real broker and store: what a success, a retry, a failure
and a poison message each add, with which attributes."""

import json
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from handlers.results import Completed, HandlerContext, HandlerResult
from messages.commands import AnyCommand, InstanceCommand
from messages.errors import PermanentError, RetryableError
from messages.publishing import build_command
from telemetry.metrics import (
    COMMAND_TYPE,
    ERROR_TYPE,
    EVENT_TYPE,
    OUTCOME,
    RESULT,
    RETRY_REASON,
)
from tests.consumers.harness import (
    FAST,
    Observer,
    provision_body,
    provisioned,
    publish,
    running_consumer,
)
from tests.telemetry_capture import Telemetry, attribute_sets, delta

pytestmark = pytest.mark.rabbitmq
PROVISION = "odoo.instance.provision.v1"
STOP = "odoo.instance.stop.v1"
FAILED = "odoo.instance.command.failed.v1"
BACKLOG = "instance_service.outbox.backlog"
OLDEST = "instance_service.outbox.oldest_age"


def test_success_retry_failure_and_poison_are_counted_by_type_and_outcome(
    amqp_url: str, engine: Engine, telemetry: Telemetry
) -> None:
    attempts: list[str] = []

    def flaky_provision(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        assert isinstance(command, InstanceCommand)
        attempts.append(command.id)
        if len(attempts) == 1:
            raise RetryableError("the API answered 503")
        return Completed(provisioned(command))

    def failing_stop(command: AnyCommand, context: HandlerContext) -> HandlerResult:
        raise PermanentError("not_stopped", "pods stayed")

    observer = Observer(amqp_url)
    command_id, body = provision_body(41)
    instance_id = json.loads(body)["subject"]
    stop = build_command(STOP, {"instance_id": instance_id}, source="/tests")
    before = telemetry.snapshot()
    handlers = {PROVISION: flaky_provision, STOP: failing_stop}
    with running_consumer(amqp_url, engine, handlers, FAST):
        publish(amqp_url, [(command_id, body)], PROVISION)
        observer.wait_for(lambda seen: len(seen) == 1)
        publish(amqp_url, [(stop.properties.message_id or "", stop.body)], STOP)
        publish(amqp_url, [("", b"{not json")], STOP)
        events = observer.wait_for(lambda seen: len(seen) == 2)
        after = telemetry.wait(
            lambda now: (
                now.get((BACKLOG, frozenset())) == 0
                and delta(before, now, "instance_service.commands.dead_lettered") == 2
                and delta(before, now, "instance_service.outbox.publish_latency") == 2
            )
        )
    assert [e["type"] for e in events] == ["odoo.instance.provisioned.v1", FAILED]

    def grew(name: str, **attributes: Any) -> float:
        return delta(before, after, f"instance_service.{name}", **attributes)

    # Deliveries: two of the provision (the retry is one), one stop, one unreadable.
    assert grew("commands.received", **{COMMAND_TYPE: PROVISION}) == 2
    assert grew("commands.received", **{COMMAND_TYPE: STOP}) == 1
    assert grew("commands.received", **{COMMAND_TYPE: "(unreadable)"}) == 1
    # Answers, by outcome and error code.
    assert grew("commands.completed", **{COMMAND_TYPE: PROVISION, OUTCOME: "succeeded"}) == 1
    assert grew("commands.completed", **{COMMAND_TYPE: STOP, OUTCOME: "failed"}) == 1
    assert grew("commands.completed", **{COMMAND_TYPE: STOP, ERROR_TYPE: "not_stopped"}) == 1
    unreadable = {COMMAND_TYPE: "(unreadable)", OUTCOME: "rejected", ERROR_TYPE: "malformed"}
    assert grew("commands.completed", **unreadable) == 1
    assert grew("commands.completed") == 3
    # Each handler run timed by what it came to.
    assert grew("handler.duration", **{COMMAND_TYPE: PROVISION, RESULT: "retry"}) == 1
    assert grew("handler.duration", **{COMMAND_TYPE: PROVISION, RESULT: "completed"}) == 1
    assert grew("handler.duration", **{COMMAND_TYPE: STOP, RESULT: "failed"}) == 1
    # The retry, and the two dead letters with their codes.
    assert grew("commands.retries", **{COMMAND_TYPE: PROVISION, RETRY_REASON: "retryable"}) == 1
    assert grew("commands.retries") == 1
    stop_failed = {COMMAND_TYPE: STOP, ERROR_TYPE: "failed:not_stopped"}
    assert grew("commands.dead_lettered", **stop_failed) == 1
    assert grew("commands.dead_lettered", **{ERROR_TYPE: "malformed"}) == 1
    # Both events confirmed, each measured from its recording; none came after a Ready wait.
    latency = "outbox.publish_latency"
    assert grew(latency, **{EVENT_TYPE: "odoo.instance.provisioned.v1"}) == 1
    assert grew(latency, **{EVENT_TYPE: FAILED}) == 1
    assert grew("instance.ready_to_event") == 0
    # The outbox gauges report the running consumer's outbox: everything published, so
    # nothing waits.
    assert after[(BACKLOG, frozenset())] == 0
    assert after[(OLDEST, frozenset())] == 0
    # Once it stops, nothing is reported for it.
    assert attribute_sets(telemetry.snapshot(), BACKLOG) == []
    assert attribute_sets(telemetry.snapshot(), OLDEST) == []
