"""Applying, scaling, restarting, deleting and waiting against the real control plane + kwok."""

from typing import Any

import pytest
from kubernetes import client

from k8s.apply import Kubernetes, WaitTimeoutError, rolled_out
from k8s.exposure import build_service
from k8s.kinds import DEPLOYMENT, PVC, SECRET, SERVICE
from k8s.settings import TenantSettings
from k8s.spec import TenantCredentials
from k8s.workload import build_deployment, build_secret, build_volume
from tests.tenant_specs import tenant_spec

pytestmark = pytest.mark.k8s

SPEC = tenant_spec(cpu_millicores=500, memory_mib=1024, storage_gib=5)
TENANTS = TenantSettings()


def _deployment(namespace: str) -> dict[str, Any]:
    # Its Secret does not exist here; kwok runs no container, so nothing reads it.
    return build_deployment(SPEC, TENANTS, namespace, replicas=1)


def test_apply_is_idempotent_and_counted(k8s_api: client.ApiClient, namespace: str) -> None:
    kube = Kubernetes(k8s_api, namespace)
    secret = build_secret(SPEC, TenantCredentials("a" * 32, "b" * 32, "c" * 32), TENANTS, namespace)
    first = kube.apply(SECRET, secret)
    second = kube.apply(SECRET, secret)
    assert first.metadata is not None
    assert second.metadata is not None
    assert first.metadata.resource_version == second.metadata.resource_version
    assert kube.requests[("patch", "Secret")] == 2
    assert kube.get(SECRET, "no-such-secret") is None


def test_deployment_becomes_available_scales_restarts_and_goes(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    kube = Kubernetes(k8s_api, namespace)
    kube.apply(PVC, build_volume(SPEC, TENANTS, namespace))  # devstack's provisioner binds it
    kube.apply(DEPLOYMENT, _deployment(namespace))
    kube.apply(SERVICE, build_service(SPEC, namespace))
    name = SPEC.names.base
    kube.wait_for(DEPLOYMENT, name, rolled_out(1), deadline_seconds=60)

    selector = ",".join(f"{k}={v}" for k, v in SPEC.selector().items())
    core = client.CoreV1Api(k8s_api)
    (before,) = core.list_namespaced_pod(namespace, label_selector=selector).items

    kube.restart(name)
    kube.wait_for(DEPLOYMENT, name, rolled_out(1), deadline_seconds=60)
    uids = [
        p.metadata.uid
        for p in core.list_namespaced_pod(namespace, label_selector=selector).items
        if p.metadata is not None and p.metadata.deletion_timestamp is None
    ]
    assert before.metadata is not None
    assert uids
    assert before.metadata.uid not in uids  # a new pod replaced the old one

    kube.scale(name, 0)
    scaled = kube.wait_for(DEPLOYMENT, name, rolled_out(0), deadline_seconds=60)
    assert scaled.spec is not None
    assert scaled.spec.replicas == 0

    kube.delete(DEPLOYMENT, name)
    kube.wait_gone(DEPLOYMENT, name, deadline_seconds=60)
    assert kube.get(DEPLOYMENT, name) is None
    kube.delete(DEPLOYMENT, name)  # already gone: fine


def test_waiting_past_the_deadline_says_what_it_saw(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    kube = Kubernetes(k8s_api, namespace)
    kube.apply(DEPLOYMENT, _deployment(namespace))
    with pytest.raises(WaitTimeoutError) as raised:
        kube.wait_for(DEPLOYMENT, SPEC.names.base, lambda _d: False, deadline_seconds=2)
    assert raised.value.last is not None
    assert "did not reach the expected state in 2 s" in str(raised.value)
