"""Waiting gives the worker back, end to end: provisions through the bus to a consumer with ONE
long-queue worker, whose init Jobs and rollouts are awaited parked, unacknowledged, and resumed
by the informer. A worker that blocked while waiting could never have two deliveries parked at
once."""

from collections.abc import Iterator

import pytest
from kubernetes import client
from sqlalchemy.engine import Engine

from tests.handlers.harness import CONSUMER, Lifecycle, event_kind, lifecycle, new_instance
from tests.handlers.harness import provision_data as provision

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

T = "odoo.instance."


@pytest.fixture
def one_worker(
    amqp_url: str, engine: Engine, k8s_api: client.ApiClient, namespace: str, admin_url: str
) -> Iterator[Lifecycle]:
    """A consumer with one worker thread per queue and the real handlers."""
    settings = CONSUMER.model_copy(update={"workers": 1})
    with lifecycle(amqp_url, engine, k8s_api, namespace, admin_url, consumer=settings) as running:
        yield running


def test_provisions_wait_parked_while_one_worker_serves_them_all(one_worker: Lifecycle) -> None:
    driver = one_worker
    instances = [new_instance() for _ in range(3)]
    commands = [driver.send(f"{T}provision.v1", provision(*instance)) for instance in instances]
    events = [driver.terminal(command_id) for command_id in commands]
    assert [event_kind(event) for event in events] == ["provisioned"] * 3
    for (instance_id, _), event in zip(instances, events, strict=True):
        assert event["data"]["instance_id"] == instance_id
        assert driver.instance(instance_id).status == "running"
    # Several deliveries waited at once with one worker: waiting held no thread.
    assert driver.parking.most_waiting >= 2
    # Each provision waited (its init Job, its rollout) and was resumed by what it waited for.
    assert driver.parking.resumed >= len(instances)
    assert driver.parking.waiting == 0
