"""Pod Security `restricted` in the tenant namespace, ruled on by the real API server's admission.

Every pod the service creates there (the server's and each Job kind's) is admitted; a privileged
pod, or one with no security context at all, is refused. The same pod in a namespace without the
label is admitted, so the refusal is the label's doing. (The lifecycle tests run in namespaces
shaped the same way: tests/handlers/conftest.py.)
"""

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from k8s.data_jobs import build_backup_job, build_import_job, build_restore_job
from k8s.settings import ImportSettings, TenantSettings
from k8s.workload import Manifest, build_deployment, build_init_job, build_update_job
from objectstore.locations import backup_location
from objectstore.settings import ObjectStorageSettings
from tests.tenant_specs import tenant_spec

STORAGE = ObjectStorageSettings()
LOCATION = backup_location("backups", "backups", "0b8f3c1e-7c2d-4d5e-9f10-2a3b4c5d6e7f", "b")

pytestmark = pytest.mark.k8s

SPEC = tenant_spec(odoo_version="18.0")
TENANTS = TenantSettings(pod_labels={"team": "billing"})


def _pod(owner: Manifest, name: str) -> Manifest:
    """The pod a controller would make from a Deployment's or a Job's template."""
    template = owner["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }


def _service_pods(namespace: str) -> dict[str, Manifest]:
    return {
        "server": _pod(build_deployment(SPEC, TENANTS, namespace, replicas=1), "server"),
        "init": _pod(build_init_job(SPEC, TENANTS, namespace), "init"),
        "update": _pod(build_update_job(SPEC, TENANTS, namespace, "update"), "update"),
        "backup": _pod(
            build_backup_job(SPEC, TENANTS, STORAGE, namespace, "b", LOCATION, beside_server=True),
            "b",
        ),
        "restore": _pod(
            build_restore_job(
                SPEC, TENANTS, STORAGE, namespace, name="restore", location="/x", sha256="0" * 64
            ),
            "restore",
        ),
        "import": _pod(
            build_import_job(
                SPEC,
                TENANTS,
                STORAGE,
                ImportSettings(),
                namespace,
                name="import",
                location=LOCATION,
            ),
            "import",
        ),
    }


def _careless(name: str, security: dict[str, Any] | None) -> Manifest:
    container: dict[str, Any] = {"name": "shell", "image": "docker.io/library/busybox:1"}
    if security is not None:
        container["securityContext"] = security
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container]},
    }


def _verdict(core: client.CoreV1Api, namespace: str, pod: Manifest) -> str:
    """`admitted`, or the API server's reason for refusing the pod (a dry run stores nothing)."""
    try:
        core.create_namespaced_pod(namespace, pod, dry_run="All")  # type: ignore[arg-type]
    except ApiException as refused:
        return f"{refused.status}: {json.loads(refused.body or '{}').get('message')}"
    return "admitted"


def test_every_tenant_pod_is_admitted_and_a_privileged_one_refused(
    k8s_api: client.ApiClient, tenant_namespace: str, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    labels: Any = core.read_namespace(tenant_namespace).metadata
    assert labels.labels["pod-security.kubernetes.io/enforce"] == "restricted"

    for kind, pod in _service_pods(tenant_namespace).items():
        assert _verdict(core, tenant_namespace, pod) == "admitted", kind
        container = pod["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, kind
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts, kind  # noqa: S108 - the pod's own emptyDir

    privileged = _careless("privileged", {"privileged": True})
    refused = _verdict(core, tenant_namespace, privileged)
    assert refused.startswith("403: ")
    assert "violates PodSecurity" in refused
    assert 'privileged (container "shell" must not set securityContext.privileged=true)' in refused
    bare = _verdict(core, tenant_namespace, _careless("bare", None))
    assert bare.startswith("403: ")
    assert "violates PodSecurity" in bare
    assert "runAsNonRoot" in bare
    assert "allowPrivilegeEscalation" in bare

    # Without the label the same privileged pod is admitted: the refusal is the label's.
    assert _verdict(core, namespace, privileged) == "admitted"
