"""The watcher on the real control plane: a pod not Ready past the threshold degrades its
instance once and its recovery brings it back once; nothing is lost across a 410 or an API
server restart; statuses owned by billing or an operation are never touched. Pods are made
not Ready by patching their status (kwok leaves a running pod's status alone)."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from pydantic import SecretStr

from consumers.relay import OutboxRelay
from consumers.settings import AmqpSettings, WatcherSettings
from consumers.watcher import Watcher
from devstack import processes
from devstack.controlplane import ControlPlane
from devstack.layout import default_layout
from k8s.apply import Kubernetes
from store.lifecycle import InstanceStatus
from store.outbox import OutboxRelayStore
from tests.handlers.checks import names_of, pods
from tests.handlers.harness import Lifecycle, event_kind, new_instance, provision_data

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

T = "odoo.instance."
CHANGED = "odoo.instance.status.changed.v1"
FAST = WatcherSettings(degraded_after_seconds=2.0, tick_seconds=0.2, watch_seconds=30)


@contextmanager
def watching(
    driver: Lifecycle, settings: WatcherSettings = FAST, pod_version: str | None = None
) -> Iterator[Watcher]:
    """A watcher in a thread, on the driver's namespace, store and broker."""
    watcher = Watcher(
        cluster=lambda: Kubernetes(driver.api, driver.namespace),
        ledger=driver.ledger,
        relay=OutboxRelay(OutboxRelayStore(driver.engine)),
        amqp=AmqpSettings(url=SecretStr(driver.amqp_url)),
        settings=settings,
    )
    watcher.informers["Pod"].resource_version = pod_version
    thread = threading.Thread(target=watcher.serve, name="watcher", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not watcher.health.ready:
        assert time.monotonic() < deadline, "the watcher never listed"
        time.sleep(0.05)
    try:
        yield watcher
    finally:
        watcher.stopping.set()
        thread.join(60)
        assert not thread.is_alive()


def _provisioned(driver: Lifecycle) -> str:
    instance_id, subdomain = new_instance()
    event = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    assert event_kind(event) == "provisioned", event
    return instance_id


def _set_ready(driver: Lifecycle, instance_id: str, ready: bool) -> None:
    (pod,) = pods(driver, instance_id)
    now = datetime.now(UTC).isoformat()
    value = "True" if ready else "False"
    conditions = [
        {"type": kind, "status": value, "lastTransitionTime": now}
        for kind in ("Ready", "ContainersReady")
    ]
    client.CoreV1Api(driver.api).patch_namespaced_pod_status(
        pod.metadata.name, driver.namespace, {"status": {"conditions": conditions}}
    )


def _changes(driver: Lifecycle, instance_id: str) -> list[dict[str, Any]]:
    assert driver.observer is not None
    driver.observer.drain()
    return [
        body["data"]
        for _, body in driver.observer.seen
        if body.get("type") == CHANGED and body.get("subject") == instance_id
    ]


def _wait_changes(driver: Lifecycle, instance_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while len(found := _changes(driver, instance_id)) < count:
        assert time.monotonic() < deadline, f"status changes so far: {found}"
        time.sleep(0.2)
    return found


def test_not_ready_past_the_threshold_degrades_once_and_recovery_restores_once(
    driver: Lifecycle,
) -> None:
    instance_id = _provisioned(driver)
    with watching(driver) as watcher:
        _set_ready(driver, instance_id, ready=False)
        (degraded,) = _wait_changes(driver, instance_id, 1)
        assert degraded["from"] == "running"
        assert degraded["to"] == "degraded"
        assert "not Ready" in degraded["reason"]
        assert driver.instance(instance_id).status is InstanceStatus.DEGRADED
        time.sleep(3 * FAST.degraded_after_seconds)  # still not Ready: nothing more to say
        assert len(_changes(driver, instance_id)) == 1

        _set_ready(driver, instance_id, ready=True)
        changes = _wait_changes(driver, instance_id, 2)
        assert (changes[1]["from"], changes[1]["to"]) == ("degraded", "running")
        time.sleep(2 * FAST.tick_seconds + 1)
        assert len(_changes(driver, instance_id)) == 2
        assert watcher.transitions == 2
    assert driver.instance(instance_id).status is InstanceStatus.RUNNING
    # A command may follow as usual: the instance is running again.
    assert event_kind(driver.run(f"{T}restart.v1", {"instance_id": instance_id})) == "restarted"


def test_briefly_not_ready_is_not_degraded(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver)
    slow = FAST.model_copy(update={"degraded_after_seconds": 6.0})
    with watching(driver, slow):
        _set_ready(driver, instance_id, ready=False)
        time.sleep(2)
        _set_ready(driver, instance_id, ready=True)
        time.sleep(slow.degraded_after_seconds + 1)
    assert _changes(driver, instance_id) == []
    assert driver.instance(instance_id).status is InstanceStatus.RUNNING


def test_a_change_made_while_not_watching_is_found_after_a_410(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver)
    _set_ready(driver, instance_id, ready=False)
    # The watcher starts watching pods from a version long compacted away: the API answers
    # 410, it lists again and finds the pod as it is now.
    with watching(driver, pod_version="1") as watcher:
        (degraded,) = _wait_changes(driver, instance_id, 1)
        assert degraded["to"] == "degraded"
        assert watcher.informers["Pod"].relists >= 1
    assert driver.instance(instance_id).status is InstanceStatus.DEGRADED


def test_billing_owns_suspended_while_a_running_instance_without_deployment_degrades(
    driver: Lifecycle,
) -> None:
    suspended = _provisioned(driver)
    running = _provisioned(driver)
    apps = client.AppsV1Api(driver.api)
    with watching(driver):
        event = driver.run(f"{T}suspend.v1", {"instance_id": suspended, "reason": "payment_failed"})
        assert event_kind(event) == "suspended"
        assert pods(driver, suspended) == []  # its pod disappeared
        # The same hand deletes both Deployments: only the running instance is the watcher's.
        apps.delete_namespaced_deployment(names_of(suspended).base, driver.namespace)
        apps.delete_namespaced_deployment(names_of(running).base, driver.namespace)
        (degraded,) = _wait_changes(driver, running, 1)
        assert degraded["to"] == "degraded"
        assert degraded["reason"] == "its Deployment is missing"
        time.sleep(FAST.degraded_after_seconds + 1)
    assert _changes(driver, suspended) == []
    assert driver.instance(suspended).status is InstanceStatus.SUSPENDED


@pytest.mark.devstack_lifecycle
def test_an_api_server_restart_loses_no_transition(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver)
    layout = default_layout()
    with watching(driver):
        processes.stop(layout, "kube-apiserver")
        time.sleep(2)  # the watches break; the informers back off and retry
        ControlPlane(layout).up()  # starts it again and waits until the stack is healthy
        _set_ready(driver, instance_id, ready=False)
        (degraded,) = _wait_changes(driver, instance_id, 1)
        assert degraded["to"] == "degraded"
        _set_ready(driver, instance_id, ready=True)
        assert _wait_changes(driver, instance_id, 2)[1]["to"] == "running"
