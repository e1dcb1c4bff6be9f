"""Fleet reconciliation on the real control plane: objects deleted, scaled or edited by hand come
back as the handlers built them, an orphan is reported and removed only when asked, and a fleet
in line plans nothing (no false drift from the API server's defaults). Through the bus, and
through `instance-service reconcile`."""

import os
import subprocess
import sys
from typing import Any

import pytest
from kubernetes import client

from devstack.layout import default_layout
from handlers.reconcile import KINDS, observe, plan
from k8s.kinds import DEPLOYMENT, INGRESS, SERVICE
from k8s.spec import InstanceSpec
from k8s.workload import build_deployment
from tests import stack
from tests.handlers.checks import deployment, found, names_of
from tests.handlers.harness import Lifecycle, event_kind, new_instance, provision_data
from tests.stack import backup_env

pytestmark = [pytest.mark.k8s, pytest.mark.postgres]

T = "odoo.instance."
RECONCILE = "odoo.fleet.reconcile.v1"


def _provisioned(driver: Lifecycle) -> str:
    instance_id, subdomain = new_instance()
    event = driver.run(f"{T}provision.v1", provision_data(instance_id, subdomain))
    assert event_kind(event) == "provisioned", event
    return instance_id


def _reconciled(driver: Lifecycle) -> dict[str, Any]:
    event = driver.run(RECONCILE, {})
    assert event["type"] == "odoo.fleet.reconciled.v1", event
    assert "subject" not in event or event["subject"] is None
    return dict(event["data"])


def _orphan_deployment(driver: Lifecycle) -> str:
    """A Deployment with our labels for an instance the store never heard of."""
    stray_id, subdomain = new_instance()
    spec = InstanceSpec(
        instance_id=stray_id,
        customer_id="c-stray",
        subdomain=subdomain,
        odoo_version="17.0",
        cpu_millicores=500,
        memory_mib=1024,
        storage_gib=5,
    )
    manifest = build_deployment(spec, driver.tenants, driver.namespace, replicas=0)
    driver.platform.cluster().apply(DEPLOYMENT, manifest)
    return str(manifest["metadata"]["name"])


def test_a_fleet_in_line_plans_nothing(driver: Lifecycle) -> None:
    running = _provisioned(driver)
    stopped = _provisioned(driver)
    assert event_kind(driver.run(f"{T}stop.v1", {"instance_id": stopped})) == "stopped"
    cluster = driver.platform.cluster()
    found_plan = plan(driver.ledger.instances(), observe(cluster), driver.platform)
    assert found_plan.lines() == []
    assert found_plan.checked == 2
    assert sum(cluster.requests.values()) == len(KINDS)  # one list per kind
    assert _reconciled(driver) == {"checked": 2, "repaired": 0, "orphans": 0}
    assert deployment(driver, running).spec.replicas == 1
    assert deployment(driver, stopped).spec.replicas == 0


def test_objects_deleted_scaled_or_edited_by_hand_are_repaired(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver)
    suspended = _provisioned(driver)
    assert (
        event_kind(
            driver.run(f"{T}suspend.v1", {"instance_id": suspended, "reason": "payment_failed"})
        )
        == "suspended"
    )
    names = names_of(instance_id)
    core = client.CoreV1Api(driver.api)
    apps = client.AppsV1Api(driver.api)
    original_selector = found(driver, SERVICE, names.base).spec.selector
    core.delete_namespaced_service(names.base, driver.namespace)
    client.NetworkingV1Api(driver.api).patch_namespaced_ingress(
        names.base, driver.namespace, {"spec": {"rules": [{"host": "hijacked.example"}]}}
    )
    apps.patch_namespaced_deployment_scale(names.base, driver.namespace, {"spec": {"replicas": 0}})
    # A suspended instance stays down: reconciliation does not start it.
    assert deployment(driver, suspended).spec.replicas == 0

    assert _reconciled(driver) == {"checked": 2, "repaired": 1, "orphans": 0}
    service = found(driver, SERVICE, names.base)
    assert service.spec.selector == original_selector
    ingress = found(driver, INGRESS, names.base)
    subdomain = driver.instance(instance_id).subdomain
    assert [rule.host for rule in ingress.spec.rules] == [f"{subdomain}.odoo.test"]
    assert deployment(driver, instance_id).spec.replicas == 1
    assert deployment(driver, suspended).spec.replicas == 0
    # And now it is in line again.
    assert _reconciled(driver) == {"checked": 2, "repaired": 0, "orphans": 0}


def test_an_orphan_is_reported_and_removed_only_when_asked(driver: Lifecycle) -> None:
    _provisioned(driver)
    orphan = _orphan_deployment(driver)
    assert _reconciled(driver)["orphans"] == 1
    assert driver.platform.cluster().get(DEPLOYMENT, orphan) is not None
    driver.reconfigure(kubernetes=driver.kubernetes.model_copy(update={"remove_orphans": True}))
    assert _reconciled(driver)["orphans"] == 1
    assert driver.platform.cluster().get(DEPLOYMENT, orphan) is None
    assert _reconciled(driver)["orphans"] == 0


def test_the_command_line_prints_the_plan_and_repairs(driver: Lifecycle) -> None:
    instance_id = _provisioned(driver)
    names = names_of(instance_id)
    client.CoreV1Api(driver.api).delete_namespaced_service(names.base, driver.namespace)
    orphan = _orphan_deployment(driver)
    found_stack = stack.stack_endpoints()
    env = {
        **os.environ,
        "INSTANCE_SERVICE_STORE__URL": str(driver.engine.url),
        "INSTANCE_SERVICE_STORE__TENANT_ADMIN_URL": found_stack.postgres_admin_url,
        "INSTANCE_SERVICE_KUBERNETES__KUBECONFIG": found_stack.kubeconfig,
        "INSTANCE_SERVICE_KUBERNETES__NAMESPACE": driver.namespace,
        "INSTANCE_SERVICE_TENANTS__BASE_DOMAIN": driver.tenants.base_domain,
        "INSTANCE_SERVICE_TENANTS__DATABASE_HOST": "127.0.0.1",
        "INSTANCE_SERVICE_TENANTS__DATABASE_PORT": str(default_layout().ports.postgres),
        "INSTANCE_SERVICE_TENANTS__DATABASE_ADDRESSES": '["127.0.0.1/32"]',
        **backup_env(),
    }

    def reconcile(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "instance_service", "reconcile", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    dry = reconcile("--dry-run")
    assert f"repair {instance_id} Service {names.base}: create (missing)" in dry
    assert f"orphan Deployment {orphan} (instance " in dry
    assert "dry run: 1 instances checked, 1 repairs planned, 1 orphans" in dry
    assert driver.platform.cluster().get(SERVICE, names.base) is None

    done = reconcile("--remove-orphans")
    assert "1 repairs made on 1 instances, 1 orphans removed" in done
    assert driver.platform.cluster().get(SERVICE, names.base) is not None
    assert driver.platform.cluster().get(DEPLOYMENT, orphan) is None
    assert "0 repairs planned, 0 orphans" in reconcile("--dry-run")
