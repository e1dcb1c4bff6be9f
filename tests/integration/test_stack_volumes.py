"""The local cluster provides volumes: a claim binds, its pod schedules, it grows, it goes."""

from typing import Any

import pytest
from kubernetes import client, watch

from devstack.provisioner import STORAGE_CLASS
from tests.integration.kube_wait import watch_until

pytestmark = pytest.mark.k8s


def _claim(size: str) -> Any:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


def _pod() -> Any:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "user", "labels": {"app": "volume-user"}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "odoo:18.0",
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/odoo"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
    }


def test_a_claim_binds_its_pod_runs_it_grows_and_its_volume_goes(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_persistent_volume_claim(namespace, _claim("1Gi"))
    claim = watch_until(
        core.list_namespaced_persistent_volume_claim,
        namespace,
        lambda c: c.status is not None and c.status.phase == "Bound",
    )
    assert claim.spec.storage_class_name == STORAGE_CLASS  # the default class
    volume_name = claim.spec.volume_name

    core.create_namespaced_pod(namespace, _pod())
    pod = watch_until(
        core.list_namespaced_pod,
        namespace,
        lambda p: p.status is not None and p.status.phase == "Running",
    )
    assert pod.spec.node_name == "devstack-node-0"

    core.patch_namespaced_persistent_volume_claim(
        "data", namespace, {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
    )
    grown = watch_until(
        core.list_namespaced_persistent_volume_claim,
        namespace,
        lambda c: (c.status.capacity or {}).get("storage") == "2Gi",
    )
    assert grown.spec.volume_name == volume_name
    volume: Any = core.read_persistent_volume(volume_name)
    assert volume.spec.capacity["storage"] == "2Gi"

    core.delete_namespaced_pod("user", namespace, grace_period_seconds=0)
    core.delete_namespaced_persistent_volume_claim("data", namespace)
    assert _volume_goes(core, volume_name), f"volume {volume_name} outlived its claim"


def _volume_goes(core: client.CoreV1Api, name: str, timeout_seconds: int = 60) -> bool:
    """Watch the volume until it is deleted (the provisioner removes released volumes)."""
    selector = f"metadata.name={name}"
    listed = core.list_persistent_volume(field_selector=selector)
    if not listed.items:
        return True
    assert listed.metadata is not None
    stream = watch.Watch().stream(
        core.list_persistent_volume,
        field_selector=selector,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=timeout_seconds,
    )
    return any(event["type"] == "DELETED" for event in stream)
