"""deploy/'s RBAC against the real API server: the consumer's ServiceAccount can do what the
handlers need in its namespace and nothing more (no Secrets elsewhere, no listing Secrets, no
pods of its own, no ClusterRoles, no exec); the watcher's only reads. Each
refusal is shown beside the admin's being allowed, so a check cannot pass for another reason."""

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from k8s.cluster import describe_cluster
from k8s.permissions import CONSUMER_PERMISSIONS
from k8s.settings import KubernetesSettings
from tests.deploy.manifests import service_account_api

pytestmark = pytest.mark.k8s


def _status(call: Callable[[], Any]) -> int:
    """The HTTP status a call ends with (200 when it returns)."""
    try:
        call()
    except ApiException as error:
        return int(error.status or 0)
    return 200


@pytest.fixture
def consumer_api(k8s_api: client.ApiClient, namespace: str) -> Iterator[client.ApiClient]:
    """deploy/'s consumer ServiceAccount, bound by deploy/'s Role, in the test namespace."""
    with service_account_api(k8s_api, namespace) as api:
        yield api


@pytest.fixture
def other_namespace(k8s_api: client.ApiClient) -> Iterator[str]:
    """A second namespace holding a Secret."""
    core = client.CoreV1Api(k8s_api)
    name = f"test-other-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name="elsewhere"), data={"k": "dg=="})
    core.create_namespaced_secret(name, secret)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def _secret(api: client.ApiClient, namespace: str) -> None:
    client.CoreV1Api(api).create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="mine"), data={"k": "dg=="})
    )


def test_secrets_of_another_namespace_are_out_of_reach(
    k8s_api: client.ApiClient, consumer_api: client.ApiClient, namespace: str, other_namespace: str
) -> None:
    _secret(k8s_api, namespace)
    own = client.CoreV1Api(consumer_api)
    assert _status(lambda: own.read_namespaced_secret("mine", namespace)) == 200
    assert _status(lambda: own.read_namespaced_secret("elsewhere", other_namespace)) == 403
    assert _status(lambda: own.list_secret_for_all_namespaces()) == 403
    admin = client.CoreV1Api(k8s_api)
    assert _status(lambda: admin.read_namespaced_secret("elsewhere", other_namespace)) == 200


def test_it_cannot_list_secrets_even_in_its_namespace(
    k8s_api: client.ApiClient, consumer_api: client.ApiClient, namespace: str
) -> None:
    own, admin = client.CoreV1Api(consumer_api), client.CoreV1Api(k8s_api)
    assert _status(lambda: own.list_namespaced_secret(namespace)) == 403
    assert _status(lambda: own.list_namespaced_secret(namespace, watch=False, limit=1)) == 403
    assert _status(lambda: admin.list_namespaced_secret(namespace)) == 200


def test_it_cannot_create_cluster_roles(
    k8s_api: client.ApiClient, consumer_api: client.ApiClient
) -> None:
    role = client.V1ClusterRole(
        metadata=client.V1ObjectMeta(name="escalate-test"),
        rules=[client.V1PolicyRule(api_groups=["*"], resources=["*"], verbs=["*"])],
    )
    own = client.RbacAuthorizationV1Api(consumer_api)
    assert _status(lambda: own.create_cluster_role(role)) == 403
    admin = client.RbacAuthorizationV1Api(k8s_api)
    assert _status(lambda: admin.create_cluster_role(role, dry_run="All")) == 200


def test_it_cannot_exec_into_pods_or_make_its_own(
    k8s_api: client.ApiClient, consumer_api: client.ApiClient, namespace: str
) -> None:
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="target"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    own, admin = client.CoreV1Api(consumer_api), client.CoreV1Api(k8s_api)
    assert _status(lambda: own.create_namespaced_pod(namespace, pod)) == 403
    admin.create_namespaced_pod(namespace, pod)

    def exec_as(core: client.CoreV1Api) -> Callable[[], Any]:
        return lambda: core.connect_post_namespaced_pod_exec(
            "target", namespace, command=["id"], stdout=True
        )

    assert _status(exec_as(own)) == 403
    # The admin is authorized and gets past RBAC (then fails for want of a stream upgrade).
    assert _status(exec_as(admin)) not in (200, 401, 403)


def test_the_watcher_only_reads(k8s_api: client.ApiClient, namespace: str) -> None:
    with service_account_api(k8s_api, namespace, "instance-service-watcher") as watcher:
        core, apps = client.CoreV1Api(watcher), client.AppsV1Api(watcher)
        assert _status(lambda: core.list_namespaced_pod(namespace)) == 200
        assert _status(lambda: apps.list_namespaced_deployment(namespace)) == 200
        assert _status(lambda: core.list_namespaced_secret(namespace)) == 403
        patch = {"metadata": {"labels": {"x": "y"}}}
        assert _status(lambda: apps.patch_namespaced_deployment("any", namespace, patch)) == 403


def test_start_up_finds_every_needed_permission_and_names_a_missing_one(
    k8s_api: client.ApiClient, consumer_api: client.ApiClient, namespace: str
) -> None:
    settings = KubernetesSettings(namespace=namespace)
    granted = describe_cluster(consumer_api, settings)
    assert granted.missing_permissions == ()
    assert not granted.rules_incomplete
    # Take one verb away from the deployed Role: start-up names exactly that.
    rbac = client.RbacAuthorizationV1Api(k8s_api)
    role = rbac.read_namespaced_role("instance-service", namespace)
    for rule in role.rules or []:
        if rule.resources == ["secrets"]:
            rule.verbs = [verb for verb in rule.verbs if verb != "delete"]
    rbac.replace_namespaced_role("instance-service", namespace, role)
    lacking = describe_cluster(consumer_api, settings)
    assert lacking.missing_permissions == ("delete secrets",)
    # Elsewhere it holds none of them.
    elsewhere = describe_cluster(consumer_api, KubernetesSettings(namespace="kube-system"))
    assert len(elsewhere.missing_permissions) == len(CONSUMER_PERMISSIONS)
