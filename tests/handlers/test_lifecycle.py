"""Acceptance of the lifecycle handlers, end to end through the bus on the real stack.

Every command goes to RabbitMQ, a consumer with the real handlers carries it out against the
local control plane (kwok plays the pods, the stand-in answers /web/health over the Service's
EndpointSlices) and the tenant PostgreSQL, and its terminal event comes back over the bus.
"""

import uuid
from typing import Any

import psycopg
import pytest
from kubernetes import client
from sqlalchemy.engine import Engine

from devstack.kwok_stages import NEVER_READY_LABEL, NEVER_READY_VALUE
from k8s.kinds import DEPLOYMENT, INGRESS, JOB, NETWORK_POLICY, PVC, SECRET, SERVICE, Kind
from store.lifecycle import InstanceStatus
from tests.handlers.checks import (
    backup_key,
    can_list_own_prefix,
    connect_as_tenant,
    deployment,
    exists,
    found,
    names_of,
    pods,
    replica_sets,
    serving,
    stored_object,
    tenant_database_exists,
)
from tests.handlers.harness import (
    Lifecycle,
    event_kind,
    lifecycle,
    new_instance,
    provision_data,
    run_steps,
    tenant_settings,
)

pytestmark = [pytest.mark.k8s, pytest.mark.postgres, pytest.mark.objectstore]

T = "odoo.instance."
STEPS = {
    "provision": [
        "credentials",
        "database",
        "objects",
        "initialise",
        "deployment",
        "rollout",
        "health",
        "record",
    ],
    "stop": ["scale", "rollout", "record"],
    "start": ["scale", "rollout", "health", "record"],
    "restart": ["scale", "restart", "rollout", "health", "record"],
    "suspend": ["scale", "rollout", "record"],
    "unsuspend": ["scale", "rollout", "health", "record"],
    "terminate": ["scale", "rollout", "record"],
    "reactivate": ["scale", "rollout", "health", "record"],
    "delete": [
        "workload",
        "workload-gone",
        "exposure",
        "access",
        "volume",
        "volume-gone",
        "database",
        "credentials",
        "record",
    ],
}
"""Each handler's steps, in order: where the fault-injection test kills it."""


def _run(driver: Lifecycle, verb: str, data: dict[str, Any], crash: int | None) -> dict[str, Any]:
    return run_steps(driver, verb, data, STEPS[verb], crash)


def _provisioned_objects_are_right(driver: Lifecycle, instance_id: str, subdomain: str) -> None:
    names = names_of(instance_id)
    server = deployment(driver, instance_id)
    assert server.spec.replicas == 1
    assert server.spec.strategy.type == "Recreate"
    container = server.spec.template.spec.containers[0]
    assert container.image == "docker.io/library/odoo:17.0"
    assert container.resources.limits == {"cpu": "500m", "memory": "1Gi"}
    volume = found(driver, PVC, names.volume)
    assert volume.spec.resources.requests["storage"] == "5Gi"
    service = found(driver, SERVICE, names.base)
    assert {p.port for p in service.spec.ports} == {8069, 8072}
    ingress = found(driver, INGRESS, names.base)
    assert ingress.spec.rules[0].host == f"{subdomain}.odoo.test"
    assert exists(driver, NETWORK_POLICY, names.base)
    assert exists(driver, NETWORK_POLICY, names.job_policy)
    secret = found(driver, SECRET, names.secret)
    assert set(secret.data) >= {"database-password", "admin-password", "odoo.conf"}
    job = found(driver, JOB, names.init_job)
    assert job.status.succeeded == 1
    # The tenant's role reaches its own database and no other.
    connect_as_tenant(driver, instance_id, names.database)
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        connect_as_tenant(driver, instance_id, "postgres")


def _whole_life(driver: Lifecycle, crash: int | None) -> None:
    """Every lifecycle command once, each killed at its `crash`-th step (None: never)."""
    instance_id, subdomain = new_instance()
    ident = {"instance_id": instance_id}

    event = _run(driver, "provision", provision_data(instance_id, subdomain), crash)
    assert event_kind(event) == "provisioned", event
    assert event["data"]["url"] == f"https://{subdomain}.odoo.test"
    names = names_of(instance_id)
    assert event["data"]["internal_url"] == (
        f"http://{names.base}.{driver.namespace}.svc.cluster.local:8069"
    )
    assert event["data"]["credentials_secret"] == {
        "namespace": driver.namespace,
        "name": names.secret,
    }
    assert "password" not in str(event).lower()
    _provisioned_objects_are_right(driver, instance_id, subdomain)
    assert serving(driver, instance_id)
    assert driver.instance(instance_id).status == InstanceStatus.RUNNING
    first_pod = pods(driver, instance_id)[0].metadata.uid

    assert event_kind(_run(driver, "stop", ident, crash)) == "stopped"
    assert deployment(driver, instance_id).spec.replicas == 0
    assert pods(driver, instance_id) == []
    assert not serving(driver, instance_id)

    assert event_kind(_run(driver, "start", ident, crash)) == "started"
    assert serving(driver, instance_id)

    before = {p.metadata.uid for p in pods(driver, instance_id)} | {first_pod}
    assert event_kind(_run(driver, "restart", ident, crash)) == "restarted"
    after = pods(driver, instance_id)
    assert len(after) == 1
    assert after[0].metadata.uid not in before
    # One restart, however often it was killed: the first template and exactly one more.
    assert len(replica_sets(driver, instance_id)) == 2
    assert serving(driver, instance_id)

    assert event_kind(_run(driver, "suspend", {**ident, "reason": "payment_failed"}, crash)) == (
        "suspended"
    )
    assert not serving(driver, instance_id)
    refused = driver.run(f"{T}start.v1", ident)
    assert event_kind(refused) == "command.rejected"
    assert refused["data"]["error"]["code"] == "not_allowed_in_state"
    assert event_kind(_run(driver, "unsuspend", ident, crash)) == "unsuspended"
    assert serving(driver, instance_id)

    terminate = {**ident, "reason": "subscription_cancelled"}
    assert event_kind(_run(driver, "terminate", terminate, crash)) == "terminated"
    assert not serving(driver, instance_id)
    kind: Kind[object]
    for kind, name in (
        (PVC, names.volume),
        (SECRET, names.secret),
        (DEPLOYMENT, names.base),
        (SERVICE, names.base),
        (INGRESS, names.base),
    ):
        assert exists(driver, kind, name), f"terminate removed {kind} {name}"
    assert tenant_database_exists(driver, instance_id)
    assert driver.instance(instance_id).status == InstanceStatus.TERMINATED

    assert event_kind(_run(driver, "reactivate", ident, crash)) == "reactivated"
    assert serving(driver, instance_id)
    assert len(replica_sets(driver, instance_id)) == 2  # the same template came back

    delete = {**ident, "final_backup": False}
    assert event_kind(_run(driver, "delete", delete, crash)) == "deleted"
    for kind, name in (
        (DEPLOYMENT, names.base),
        (SERVICE, names.base),
        (INGRESS, names.base),
        (NETWORK_POLICY, names.base),
        (JOB, names.init_job),
        (PVC, names.volume),
        (SECRET, names.secret),
    ):
        assert not exists(driver, kind, name), f"{kind} {name} survived the delete"
    assert not tenant_database_exists(driver, instance_id)
    assert driver.instance(instance_id).status == InstanceStatus.DELETED


def test_an_instance_through_its_whole_life(driver: Lifecycle) -> None:
    _whole_life(driver, crash=None)
    reached: dict[str, list[str]] = {}
    for command_type, step in driver.faults.reached_steps:
        reached.setdefault(event_kind({"type": command_type}), []).append(step)
    # The fault-injection test below kills each handler at exactly these steps.
    assert reached == STEPS


@pytest.mark.parametrize("crash", range(max(len(steps) for steps in STEPS.values())))
def test_killed_at_any_step_a_redelivery_converges(driver: Lifecycle, crash: int) -> None:
    _whole_life(driver, crash=crash)


def test_delete_keep_data_keeps_volume_database_and_credentials(driver: Lifecycle) -> None:
    instance_id, subdomain = new_instance()
    names = names_of(instance_id)
    assert event_kind(driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))) == (
        "provisioned"
    )
    delete = {"instance_id": instance_id, "final_backup": False, "keep_data": True}
    assert event_kind(driver.run(f"{T}delete.v1", delete)) == "deleted"
    assert not exists(driver, DEPLOYMENT, names.base)
    assert exists(driver, PVC, names.volume)
    assert exists(driver, SECRET, names.secret)
    connect_as_tenant(driver, instance_id, names.database)
    driver.databases.drop(names.role, names.database)


def test_delete_takes_a_final_backup_by_default(driver: Lifecycle) -> None:
    instance_id, subdomain = new_instance()
    driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    # The scoped key its data Jobs had (the final backup's Job uses it too).
    backed_up = driver.run(
        f"{T}backup.v1", {"instance_id": instance_id, "backup_id": str(uuid.uuid4())}
    )
    assert event_kind(backed_up) == "backed_up", backed_up
    jobs_key = backup_key(driver, instance_id)
    assert can_list_own_prefix(driver, instance_id, jobs_key)
    deleted = driver.run(f"{T}delete.v1", {"instance_id": instance_id})
    assert event_kind(deleted) == "deleted", deleted
    assert not exists(driver, DEPLOYMENT, names_of(instance_id).base)
    assert not tenant_database_exists(driver, instance_id)
    finals = [
        b for b in driver.ledger.backups(instance_id) if b.label == "final backup before delete"
    ]
    assert len(finals) == 1
    # Kept off the cluster, where the service's own key still reads it.
    assert len(stored_object(driver, finals[0].location)) == finals[0].size_bytes
    # Its Jobs' scoped key went with the instance: from the server and from the cluster.
    assert not exists(driver, SECRET, names_of(instance_id).backup_access)
    assert not can_list_own_prefix(driver, instance_id, jobs_key)


def test_a_pod_that_never_becomes_ready_fails_the_provision(
    amqp_url: str, engine: Engine, k8s_api: client.ApiClient, namespace: str, admin_url: str
) -> None:
    never = tenant_settings(pod_labels={NEVER_READY_LABEL: NEVER_READY_VALUE})
    with lifecycle(
        amqp_url, engine, k8s_api, namespace, admin_url, never, ready_deadline_seconds=5.0
    ) as driver:
        instance_id, subdomain = new_instance()
        failed = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
        assert event_kind(failed) == "command.failed"
        error = failed["data"]["error"]
        assert error["code"] == "not_ready"
        assert "did not have 1 Ready pod(s) within 5 s" in error["message"]
        assert "Ready=False: ContainersNotReady" in error["message"]
        record = driver.instance(instance_id)
        assert record.status == InstanceStatus.ERROR
        assert record.last_error is not None
        assert "Ready pod(s)" in record.last_error


def test_a_wrong_service_selector_fails_the_health_check(
    amqp_url: str, engine: Engine, k8s_api: client.ApiClient, namespace: str, admin_url: str
) -> None:
    with lifecycle(
        amqp_url, engine, k8s_api, namespace, admin_url, health_deadline_seconds=3.0
    ) as driver:
        instance_id, subdomain = new_instance()
        driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
        names = names_of(instance_id)
        client.CoreV1Api(k8s_api).patch_namespaced_service(
            names.base,
            namespace,
            {"spec": {"selector": {"app.kubernetes.io/instance": "someone-else"}}},
        )
        failed = driver.run(f"{T}restart.v1", {"instance_id": instance_id})
        assert event_kind(failed) == "command.failed"
        assert failed["data"]["error"]["code"] == "unhealthy"
        assert "has no ready endpoint" in failed["data"]["error"]["message"]
        assert driver.instance(instance_id).status == InstanceStatus.ERROR
