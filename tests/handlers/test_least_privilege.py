"""The lifecycle end to end with the consumer authenticated as deploy/'s ServiceAccount, bound
by deploy/'s Role and nothing else: every command, the fleet reconcile included, succeeds, no
request is refused, and every permission the Role grants is one the handlers used (the watches
of pods and volumes excepted: they happen only when what is waited for outlives the first
look)."""

from collections.abc import Iterator

import pytest
from kubernetes import client
from sqlalchemy.engine import Engine

from k8s.permissions import CONSUMER_PERMISSIONS, VERB_OF_CALL
from telemetry.metrics import K8S_RESOURCE, K8S_VERB, STATUS_CODE
from tests.deploy.manifests import service_account_api
from tests.handlers.harness import Lifecycle, event_kind, lifecycle
from tests.handlers.test_data_operations import _data_life
from tests.handlers.test_domains import pointed, running
from tests.handlers.test_lifecycle import _whole_life
from tests.telemetry_capture import Telemetry

pytestmark = [pytest.mark.k8s, pytest.mark.postgres, pytest.mark.dns]

RBAC_RESOURCE = {
    "Secret": "secrets",
    "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Pod": "pods",
    "Deployment": "deployments",
    "Deployment/scale": "deployments/scale",
    "Job": "jobs",
    "Ingress": "ingresses",
    "NetworkPolicy": "networkpolicies",
    "Certificate": "certificates",
}
MAY_GO_UNUSED = {
    ("watch", "pods"),
    ("watch", "persistentvolumeclaims"),
    ("watch", "certificates"),
}
"""Watches made only when the look before them still shows what is being waited for (the pods
of a stopped instance, a deleted volume, a certificate not issued yet): on a quick stack that
look may already find it done."""


def _domain_life(driver: Lifecycle) -> None:
    """A domain added and removed, another added and deleted with its instance."""
    instance_id = running(driver)
    for domain in (pointed(), pointed()):
        data = {"instance_id": instance_id, "domain": domain}
        assert event_kind(driver.run("odoo.instance.domain.add.v1", data)) == "domain.added"
    removed = driver.run("odoo.instance.domain.remove.v1", data)
    assert event_kind(removed) == "domain.removed"
    delete = {"instance_id": instance_id, "final_backup": False}
    assert event_kind(driver.run("odoo.instance.delete.v1", delete)) == "deleted"


@pytest.fixture
def deployed(
    amqp_url: str, engine: Engine, k8s_api: client.ApiClient, namespace: str, admin_url: str
) -> Iterator[Lifecycle]:
    """A consumer acting as deploy/'s ServiceAccount (the test's checks still act as admin)."""
    with (
        service_account_api(k8s_api, namespace) as account,
        lifecycle(amqp_url, engine, k8s_api, namespace, admin_url, service_api=account) as driver,
    ):
        yield driver


def test_every_command_runs_as_the_deployed_service_account_using_all_it_is_granted(
    deployed: Lifecycle, telemetry: Telemetry
) -> None:
    before = telemetry.snapshot()
    _whole_life(deployed, crash=None)
    _data_life(deployed, crash=None)
    _domain_life(deployed)
    reconciled = deployed.run("odoo.fleet.reconcile.v1", {})
    assert reconciled["type"] == "odoo.fleet.reconciled.v1", reconciled
    after = telemetry.snapshot()

    requests: dict[tuple[str, str], float] = {}
    refused = 0.0
    for (name, attributes), value in after.items():
        if name != "instance_service.kubernetes.requests":
            continue
        grown = value - before.get((name, attributes), 0.0)
        labels = dict(attributes)
        if grown <= 0:
            continue
        if labels.get(STATUS_CODE) == 403:
            refused += grown
        verb, resource = (
            VERB_OF_CALL[str(labels[K8S_VERB])],
            RBAC_RESOURCE[str(labels[K8S_RESOURCE])],
        )
        requests[(verb, resource)] = requests.get((verb, resource), 0.0) + grown
        if verb == "patch" and labels.get(STATUS_CODE) == 201:
            # An apply that created the object was authorized as `create` as well.
            requests[("create", resource)] = requests.get(("create", resource), 0.0) + grown
    assert refused == 0
    granted = {
        (verb, permission.resource)
        for permission in CONSUMER_PERMISSIONS
        for verb in permission.verbs
    }
    used = set(requests)
    assert used <= granted, f"used without a grant: {used - granted}"
    assert granted - used <= MAY_GO_UNUSED, f"granted and never used: {granted - used}"
