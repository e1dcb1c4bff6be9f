"""Every built manifest is a valid object for the real API server (server-side dry run)."""

from typing import Any

import pytest
from kubernetes import client, utils

from k8s.data_jobs import build_backup_job, build_restore_job
from k8s.exposure import build_ingress, build_service
from k8s.network import build_network_policies
from k8s.settings import TenantSettings
from k8s.spec import TenantCredentials
from k8s.tenancy import build_default_deny
from k8s.workload import (
    build_deployment,
    build_init_job,
    build_secret,
    build_update_job,
    build_volume,
)
from objectstore.locations import backup_location
from objectstore.settings import ObjectStorageSettings
from tests.tenant_specs import tenant_spec

STORAGE = ObjectStorageSettings()
LOCATION = backup_location("backups", "backups", "0b8f3c1e-7c2d-4d5e-9f10-2a3b4c5d6e7f", "b")

pytestmark = pytest.mark.k8s

SPEC = tenant_spec(odoo_version="18.0", language="en_US", modules=("sale",))
TENANTS = TenantSettings(
    tls_secret="wildcard",
    storage_class="standard",
    # Every policy rule present, in both address families: the API server validates each.
    database_addresses=("10.20.0.5/32", "fd00:20::5/128"),
    database_peer={"namespace": "databases", "pod_labels": {"app": "postgres"}},
    api_server_addresses=("34.120.7.1/32",),
    cluster_cidrs=("10.244.0.0/16", "2600:1900:4000::/44"),
    backup_storage_addresses=("52.95.110.1/32",),
)


def _manifests(namespace: str) -> list[dict[str, Any]]:
    credentials = TenantCredentials("a" * 32, "b" * 32, "c" * 32)
    return [
        build_secret(SPEC, credentials, TENANTS, namespace),
        build_volume(SPEC, TENANTS, namespace),
        build_init_job(SPEC, TENANTS, namespace),
        build_deployment(SPEC, TENANTS, namespace, replicas=1),
        build_service(SPEC, namespace),
        build_ingress(SPEC, TENANTS, namespace),
        *build_network_policies(SPEC, TENANTS, namespace),
        build_default_deny(namespace),
        build_update_job(SPEC, TENANTS, namespace, "update"),
        build_backup_job(SPEC, TENANTS, STORAGE, namespace, "b1", LOCATION, beside_server=True),
        build_restore_job(
            SPEC,
            TENANTS,
            STORAGE,
            namespace,
            name="restore",
            location=LOCATION.uri,
            sha256="0" * 64,
        ),
    ]


def test_the_api_server_accepts_every_manifest(k8s_api: client.ApiClient, namespace: str) -> None:
    accepted = []
    for manifest in _manifests(namespace):
        created = utils.create_from_dict(k8s_api, manifest, namespace=namespace, dry_run="All")
        accepted.append((manifest["kind"], created[0].metadata.name))
    assert [kind for kind, _ in accepted] == [
        "Secret",
        "PersistentVolumeClaim",
        "Job",
        "Deployment",
        "Service",
        "Ingress",
        "NetworkPolicy",
        "NetworkPolicy",
        "NetworkPolicy",
        "Job",
        "Job",
        "Job",
    ]
    # A dry run stores nothing.
    assert client.AppsV1Api(k8s_api).list_namespaced_deployment(namespace).items == []


def test_the_api_server_refuses_a_broken_manifest(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    broken = build_deployment(SPEC, TENANTS, namespace, replicas=1)
    broken["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "something-else"}
    with pytest.raises(utils.FailToCreateError) as raised:
        utils.create_from_dict(k8s_api, broken, namespace=namespace, dry_run="All")
    assert raised.value.api_exceptions[0].status == 422
