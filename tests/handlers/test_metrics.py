"""The metrics of real work: a provision on the real control plane, tenant database and broker,
then a command that fails; the data points each adds, with their attributes."""

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
from tests.handlers.harness import Lifecycle, new_instance, provision_data
from tests.telemetry_capture import Telemetry, delta

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

T = "odoo.instance."
PROVISIONED = f"{T}provisioned.v1"
FAILED = f"{T}command.failed.v1"


def test_a_provision_and_a_failing_restore_are_measured(
    telemetry: Telemetry, driver: Lifecycle
) -> None:
    before = telemetry.snapshot()
    instance_id, subdomain = new_instance()
    provisioned = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    assert provisioned["type"] == PROVISIONED
    missing = "5b1e0c7a-2d3f-4a4b-9c5d-6e7f8a9b0c1d"
    failed = driver.run(f"{T}restore.v1", {"instance_id": instance_id, "backup_id": missing})
    assert failed["data"]["error"]["code"] == "unknown_backup"
    after = telemetry.wait(
        lambda now: (
            delta(before, now, "instance_service.outbox.publish_latency") >= 2
            and delta(before, now, "instance_service.commands.dead_lettered") >= 1
        )
    )

    def grew(name: str, **attributes: Any) -> float:
        return delta(before, after, f"instance_service.{name}", **attributes)

    provision, restore = f"{T}provision.v1", f"{T}restore.v1"
    assert grew("commands.received", **{COMMAND_TYPE: provision}) >= 1
    assert grew("commands.received", **{COMMAND_TYPE: restore}) == 1
    assert grew("commands.completed", **{COMMAND_TYPE: provision, OUTCOME: "succeeded"}) == 1
    unknown = {COMMAND_TYPE: restore, OUTCOME: "failed", ERROR_TYPE: "unknown_backup"}
    assert grew("commands.completed", **unknown) == 1
    assert grew("handler.duration", **{COMMAND_TYPE: provision, RESULT: "completed"}) == 1
    assert grew("handler.duration", **{COMMAND_TYPE: restore, RESULT: "failed"}) == 1
    dead = {COMMAND_TYPE: restore, ERROR_TYPE: "failed:unknown_backup"}
    assert grew("commands.dead_lettered", **dead) == 1

    # Kubernetes requests with their real status codes: the first look for the Secret finds
    # none (404, an answer, not an error), applying it succeeds, the rollout is watched.
    def requests(verb: str, resource: str, **more: Any) -> float:
        return grew("kubernetes.requests", **{K8S_VERB: verb, K8S_RESOURCE: resource, **more})

    assert requests("read", "Secret", **{STATUS_CODE: 404}) >= 1
    assert (
        requests("patch", "Secret", **{STATUS_CODE: 200})
        + requests("patch", "Secret", **{STATUS_CODE: 201})
        >= 1
    )
    assert requests("patch", "Deployment") >= 1
    assert requests("watch", "Deployment", **{STATUS_CODE: 200}) >= 1

    # The provisioned event is measured from the pods' Ready; the failure waited for nothing.
    assert grew("instance.ready_to_event", **{EVENT_TYPE: PROVISIONED}) == 1
    assert grew("instance.ready_to_event", **{EVENT_TYPE: FAILED}) == 0
    assert grew("outbox.publish_latency", **{EVENT_TYPE: PROVISIONED}) == 1
    assert grew("outbox.publish_latency", **{EVENT_TYPE: FAILED}) == 1
