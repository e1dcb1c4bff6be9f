"""Billing holds through the bus: a command that fails on a suspended instance leaves it
suspended, and `start` or `restart` still cannot serve it; only `unsuspend` does.

The failure is real: a resize whose volume the API server refuses to change (the consumer is
told of a StorageClass other than the one the volume was made with; a claim's class is
immutable, so the API answers 422), as a StorageClass that cannot expand would.
"""

import pytest

from store.lifecycle import Hold, InstanceStatus
from tests.handlers.checks import deployment, serving
from tests.handlers.harness import (
    Lifecycle,
    event_kind,
    new_instance,
    provision_data,
    tenant_settings,
)

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

T = "odoo.instance."


def test_a_failed_resize_of_a_suspended_instance_does_not_lift_the_hold(
    driver: Lifecycle,
) -> None:
    instance_id, subdomain = new_instance()
    ident = {"instance_id": instance_id}
    assert event_kind(driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))) == (
        "provisioned"
    )
    suspend = {**ident, "reason": "payment_failed"}
    assert event_kind(driver.run(f"{T}suspend.v1", suspend)) == "suspended"

    driver.reconfigure(tenant_settings(storage_class="cannot-change-the-class"))
    plan = {"cpu_millicores": 500, "memory_mib": 1024, "storage_gib": 8}
    failed = driver.run(f"{T}resize.v1", {**ident, "plan": plan})
    assert event_kind(failed) == "command.failed", failed
    assert failed["data"]["error"]["code"] == "kubernetes_invalid"
    assert failed["data"]["rolled_back"] is False
    record = driver.instance(instance_id)
    assert record.status is InstanceStatus.SUSPENDED  # was `error`, from which start served it
    assert record.hold is Hold.SUSPENDED
    assert record.last_error is not None

    driver.reconfigure(tenant_settings())
    for verb in ("start", "restart"):
        refused = driver.run(f"{T}{verb}.v1", ident)
        assert event_kind(refused) == "command.rejected", refused
        assert refused["data"]["error"]["code"] == "not_allowed_in_state"
        assert "billing hold" in refused["data"]["error"]["message"]
    assert deployment(driver, instance_id).spec.replicas == 0
    assert not serving(driver, instance_id)

    assert event_kind(driver.run(f"{T}unsuspend.v1", ident)) == "unsuspended"
    record = driver.instance(instance_id)
    assert (record.status, record.hold) == (InstanceStatus.RUNNING, None)
    assert serving(driver, instance_id)
