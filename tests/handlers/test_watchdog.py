"""A lost continuation on the real stack: the instance stays busy until the watcher's watchdog
resumes its operation or fails it, with exactly one terminal event, and later commands run.

A provision whose pod is never Ready (kwok, on request) waits at its rollout: the consumer
acknowledges its message and leaves the continuation in a delay queue. The consumer is then
stopped, and the continuation, back in the long work queue, is purged: lost, as a classic
delay queue can lose it. Everything else is real: RabbitMQ, the consumer and its handlers, the
control plane, the tenant PostgreSQL, and the watcher with its own AMQP connection.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime

import pika
import pytest
from kubernetes import client
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from consumers.health import Health
from consumers.processing import Processor
from consumers.relay import OutboxRelay
from consumers.runtime import ConsumerRuntime
from consumers.settings import AmqpSettings, WatcherSettings
from consumers.topology import queue_for
from consumers.watcher import Watcher
from devstack.kwok_stages import NEVER_READY_LABEL, NEVER_READY_VALUE
from handlers.watchdog import TIMED_OUT, Watchdog
from k8s.apply import Kubernetes
from messages.settings import ContractSettings
from store.ledger import Ledger
from store.lifecycle import InstanceStatus
from store.models import Operation
from store.outbox import OutboxRelayStore
from store.settings import OperationSettings
from store.watchdog import RESUMES_KEY
from tests.catalog import CATALOG, MACHINE
from tests.handlers.checks import pods
from tests.handlers.harness import (
    CONSUMER,
    Lifecycle,
    event_kind,
    lifecycle,
    new_instance,
    provision_data,
    tenant_settings,
)

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

PROVISION = "odoo.instance.provision.v1"
SHORT_BUDGET = CONSUMER.model_copy(update={"handler_budget_seconds": 6.0})
"""A rollout that cannot finish hands over to a continuation after 3 s of waiting."""
DEADLINE_SECONDS = 20.0
FREEZE_SECONDS = 8.0
"""How long a later command is seen waiting behind the open operation."""


@pytest.fixture
def never_ready(
    amqp_url: str, engine: Engine, k8s_api: client.ApiClient, namespace: str, admin_url: str
) -> Iterator[Lifecycle]:
    """Instances whose pods never become Ready, until the test says they are."""
    tenants = tenant_settings(pod_labels={NEVER_READY_LABEL: NEVER_READY_VALUE})
    with lifecycle(
        amqp_url, engine, k8s_api, namespace, admin_url, tenants, ready_deadline_seconds=600
    ) as driver:
        driver.stop()  # the tests run their own consumers, on ledgers with short deadlines
        yield driver


def _ledger(driver: Lifecycle, resumes: int) -> Ledger:
    operations = OperationSettings(
        deadline_seconds={PROVISION: DEADLINE_SECONDS}, resumes=resumes, sweep_seconds=0.5
    )
    return Ledger(driver.engine, MACHINE, operations=operations)


@contextmanager
def consuming(driver: Lifecycle, ledger: Ledger) -> Iterator[None]:
    """A consumer with the real handlers, writing deadlines from `ledger`'s settings."""
    processor = Processor(
        ledger,
        CATALOG.registry(CATALOG.handlers(driver.platform)),
        SHORT_BUDGET,
        ContractSettings(),
    )
    health = Health()
    runtime = ConsumerRuntime(
        AmqpSettings(url=SecretStr(driver.amqp_url)),
        SHORT_BUDGET,
        processor,
        OutboxRelay(OutboxRelayStore(driver.engine)),
        health,
    )
    thread = threading.Thread(target=runtime.serve, name="consumer", daemon=True)
    thread.start()
    _until(lambda: health.ready, "the consumer never became ready")
    try:
        yield
    finally:
        runtime.stopping.set()
        thread.join(60)
        assert not thread.is_alive()


@contextmanager
def watching(driver: Lifecycle, ledger: Ledger) -> Iterator[None]:
    """The watcher, with its watchdog sweeping every half second."""
    watcher = Watcher(
        cluster=lambda: Kubernetes(driver.api, driver.namespace),
        ledger=ledger,
        relay=OutboxRelay(OutboxRelayStore(driver.engine)),
        amqp=AmqpSettings(url=SecretStr(driver.amqp_url)),
        settings=WatcherSettings(tick_seconds=0.2, watch_seconds=30, health_port=0),
        watchdog=Watchdog(ledger, ContractSettings()),
    )
    thread = threading.Thread(target=watcher.serve, name="watcher", daemon=True)
    thread.start()
    try:
        yield
    finally:
        watcher.stopping.set()
        thread.join(60)
        assert not thread.is_alive()


def _until(done: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _operation(driver: Lifecycle, command_id: str) -> Operation:
    found = _begun(driver, command_id)
    assert found is not None, f"no operation for {command_id}"
    return found


def _begun(driver: Lifecycle, command_id: str) -> Operation | None:
    with Session(driver.engine) as session:
        found = session.query(Operation).filter_by(command_id=command_id).one_or_none()
        if found is not None:
            session.expunge(found)
        return found


def _lose_the_continuation(driver: Lifecycle) -> None:
    """With no consumer running: wait until the continuation is back in the long work queue
    (its delay queue expired it there), then purge it."""
    long = queue_for(PROVISION, SHORT_BUDGET)
    delays = list(long.delay_queues)
    with closing(pika.BlockingConnection(pika.URLParameters(driver.amqp_url))) as connection:
        channel = connection.channel()

        def count(queue: str) -> int:
            return int(channel.queue_declare(queue, passive=True).method.message_count)

        _until(
            lambda: sum(count(queue) for queue in delays) == 0 and count(long.name) == 1,
            "the continuation never came back to the work queue",
            timeout=30,
        )
        channel.queue_purge(long.name)
        assert count(long.name) == 0


def _frozen_behind(driver: Lifecycle, instance_id: str, provision_id: str) -> str:
    """A stop sent now waits: the instance shows an operation that nothing carries on."""
    stop_id = driver.send("odoo.instance.stop.v1", {"instance_id": instance_id})
    time.sleep(FREEZE_SECONDS)
    assert driver.recorded_events(stop_id) == []
    assert driver.recorded_events(provision_id) == []
    record = driver.instance(instance_id)
    assert record.status is InstanceStatus.PROVISIONING
    assert record.current_operation_id == _operation(driver, provision_id).id
    return stop_id


def _waiting_at_rollout(driver: Lifecycle, ledger: Ledger) -> tuple[str, str]:
    """Provision an instance until its operation waits at the rollout; lose the continuation."""
    instance_id, subdomain = new_instance()
    with consuming(driver, ledger):
        provision_id = driver.send(PROVISION, provision_data(instance_id, subdomain))
        _until(
            lambda: getattr(_begun(driver, provision_id), "step", "") == "waiting: rollout",
            "the provision never waited at its rollout",
        )
    _lose_the_continuation(driver)
    return instance_id, provision_id


def _make_ready(driver: Lifecycle, instance_id: str) -> None:
    (pod,) = pods(driver, instance_id)
    now = datetime.now(UTC).isoformat()
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now}
        for kind in ("Ready", "ContainersReady")
    ]
    client.CoreV1Api(driver.api).patch_namespaced_pod_status(
        pod.metadata.name, driver.namespace, {"status": {"conditions": conditions}}
    )


def test_a_lost_continuation_is_resumed_by_the_watchdog(never_ready: Lifecycle) -> None:
    driver = never_ready
    ledger = _ledger(driver, resumes=1)
    instance_id, provision_id = _waiting_at_rollout(driver, ledger)
    with consuming(driver, ledger):
        stop_id = _frozen_behind(driver, instance_id, provision_id)
        _make_ready(driver, instance_id)  # what the provision waits for is there; nobody looks
        with watching(driver, ledger):
            provisioned = driver.terminal(provision_id, timeout=120)
            assert event_kind(provisioned) == "provisioned"
            stopped = driver.terminal(stop_id, timeout=60)
            assert event_kind(stopped) == "stopped"
            time.sleep(2)  # a late second answer would show here
    assert driver.terminal(provision_id)["id"] == provisioned["id"]  # one event, bus and store
    operation = _operation(driver, provision_id)
    assert operation.state == "succeeded"
    assert operation.result[RESUMES_KEY] == 1
    assert driver.instance(instance_id).status is InstanceStatus.STOPPED


def test_a_continuation_lost_past_its_resumes_fails_the_command_once(
    never_ready: Lifecycle,
) -> None:
    driver = never_ready
    ledger = _ledger(driver, resumes=0)
    instance_id, provision_id = _waiting_at_rollout(driver, ledger)
    with consuming(driver, ledger):
        stop_id = _frozen_behind(driver, instance_id, provision_id)
        with watching(driver, ledger):
            failed = driver.terminal(provision_id, timeout=120)
            assert event_kind(failed) == "command.failed"
            assert failed["data"]["error"]["code"] == TIMED_OUT
            assert failed["data"]["rolled_back"] is False
            assert "waiting: rollout" in failed["data"]["error"]["message"]
            # The instance rests in `error`, from which the waiting stop runs.
            stopped = driver.terminal(stop_id, timeout=60)
            assert event_kind(stopped) == "stopped"
            time.sleep(2)
    assert driver.terminal(provision_id)["id"] == failed["id"]
    assert _operation(driver, provision_id).state == "failed"
    record = driver.instance(instance_id)
    assert record.status is InstanceStatus.STOPPED
    assert record.current_operation_id is None
