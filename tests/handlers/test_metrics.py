"""The metrics of real work: a provision on the real control plane, tenant database and broker,
then a command that fails; the data points each adds, with their attributes.

The failure is the API server's: a resize whose volume claim would change its StorageClass
(immutable, 422), as the consumer is told of another class than the volume was made with.
"""

from typing import Any

import pytest

from telemetry.metrics import (
    COMMAND_TYPE,
    ERROR_TYPE,
    EVENT_TYPE,
    K8S_RESOURCE,
    K8S_VERB,
    OUTCOME,
    RESULT,
    STATUS_CODE,
)
from tests.handlers.harness import Lifecycle, new_instance, provision_data, tenant_settings
from tests.telemetry_capture import Telemetry, delta

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

T = "odoo.instance."
PROVISIONED = f"{T}provisioned.v1"
FAILED = f"{T}command.failed.v1"


def test_a_provision_and_a_failing_resize_are_measured(
    telemetry: Telemetry, watching_driver: Lifecycle
) -> None:
    driver = watching_driver  # one decision per delivery: see test_parking.py for parked ones
    before = telemetry.snapshot()
    instance_id, subdomain = new_instance()
    provisioned = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    assert provisioned["type"] == PROVISIONED
    driver.reconfigure(tenant_settings(storage_class="cannot-change-the-class"))
    plan = {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 8}
    failed = driver.run(f"{T}resize.v1", {"instance_id": instance_id, "plan": plan})
    assert failed["data"]["error"]["code"] == "kubernetes_invalid"
    after = telemetry.wait(
        lambda now: (
            delta(before, now, "instance_service.outbox.publish_latency") >= 2
            and delta(before, now, "instance_service.commands.dead_lettered") >= 1
        )
    )

    def grew(name: str, **attributes: Any) -> float:
        return delta(before, after, f"instance_service.{name}", **attributes)

    provision, resize = f"{T}provision.v1", f"{T}resize.v1"
    assert grew("commands.received", **{COMMAND_TYPE: provision}) >= 1
    assert grew("commands.received", **{COMMAND_TYPE: resize}) == 1
    assert grew("commands.completed", **{COMMAND_TYPE: provision, OUTCOME: "succeeded"}) == 1
    invalid = {COMMAND_TYPE: resize, OUTCOME: "failed", ERROR_TYPE: "kubernetes_invalid"}
    assert grew("commands.completed", **invalid) == 1
    assert grew("handler.duration", **{COMMAND_TYPE: provision, RESULT: "completed"}) == 1
    assert grew("handler.duration", **{COMMAND_TYPE: resize, RESULT: "failed"}) == 1
    dead = {COMMAND_TYPE: resize, ERROR_TYPE: "failed:kubernetes_invalid"}
    assert grew("commands.dead_lettered", **dead) == 1

    # Kubernetes requests with their real status codes: the first look for the Secret finds
    # none (404, an answer, not an error), applying it succeeds, the rollout is awaited by a
    # list and, unless the list already shows the pods ready (kwok may be that quick), a watch.
    def requests(verb: str, resource: str, **more: Any) -> float:
        return grew("kubernetes.requests", **{K8S_VERB: verb, K8S_RESOURCE: resource, **more})

    assert requests("read", "Secret", **{STATUS_CODE: 404}) >= 1
    assert (
        requests("patch", "Secret", **{STATUS_CODE: 200})
        + requests("patch", "Secret", **{STATUS_CODE: 201})
        >= 1
    )
    assert requests("patch", "Deployment") >= 1
    assert requests("list", "Deployment", **{STATUS_CODE: 200}) >= 1
    assert requests("watch", "Deployment") == requests("watch", "Deployment", **{STATUS_CODE: 200})
    assert requests("patch", "PersistentVolumeClaim", **{STATUS_CODE: 422}) == 1

    # The provisioned event is measured from the pods' Ready; the failure waited for nothing.
    assert grew("instance.ready_to_event", **{EVENT_TYPE: PROVISIONED}) == 1
    assert grew("instance.ready_to_event", **{EVENT_TYPE: FAILED}) == 0
    assert grew("outbox.publish_latency", **{EVENT_TYPE: PROVISIONED}) == 1
    assert grew("outbox.publish_latency", **{EVENT_TYPE: FAILED}) == 1
