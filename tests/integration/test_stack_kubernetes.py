"""The local control plane is real: controllers, scheduler and kwok turn objects into Ready pods."""

import json
import threading
import time
import uuid
from typing import Any

import pytest
from kubernetes import client

from devstack.controlplane import NODE_NAME, ControlPlane
from devstack.kwok_stages import NEVER_READY_LABEL, NEVER_READY_VALUE
from devstack.layout import default_layout
from devstack.processes import StackError
from tests.integration.kube_wait import watch_until

pytestmark = pytest.mark.k8s

LABELS = {"app.kubernetes.io/name": "smoke"}
SELECTOR = "app.kubernetes.io/name=smoke"
# kwok runs no container, so the image is never pulled; it only has to be a valid reference.
IMAGE = "odoo:18.0"


def _deployment(labels: dict[str, str] = LABELS) -> client.V1Deployment:
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="smoke", labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name="web",
                            image=IMAGE,
                            ports=[client.V1ContainerPort(container_port=8069, name="http")],
                        )
                    ]
                ),
            ),
        ),
    )


def _service() -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name="smoke", labels=LABELS),
        spec=client.V1ServiceSpec(
            selector=LABELS, ports=[client.V1ServicePort(name="http", port=8069)]
        ),
    )


def _job() -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name="smoke"),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="init", image=IMAGE, command=["true"])],
                )
            ),
        ),
    )


def _has_condition(conditions: list[Any] | None, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in conditions or [])


def test_deployment_pod_becomes_ready_and_its_service_gets_an_endpoint_slice(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    core, apps = client.CoreV1Api(k8s_api), client.AppsV1Api(k8s_api)
    discovery = client.DiscoveryV1Api(k8s_api)
    core.create_namespaced_service(namespace, _service())  # first: see test_health_check
    apps.create_namespaced_deployment(namespace, _deployment())

    pod: client.V1Pod = watch_until(
        core.list_namespaced_pod,
        namespace,
        lambda p: p.status is not None and _has_condition(p.status.conditions, "Ready"),
        label_selector=SELECTOR,
    )
    assert pod.spec is not None
    assert pod.status is not None
    assert pod.spec.node_name == NODE_NAME
    pod_ip = pod.status.pod_ip
    assert pod_ip

    def lists_the_pod_ready(endpoint_slice: client.V1EndpointSlice) -> bool:
        return any(
            pod_ip in endpoint.addresses
            and endpoint.conditions is not None
            and endpoint.conditions.ready is True
            for endpoint in endpoint_slice.endpoints or []
        )

    endpoint_slice: client.V1EndpointSlice = watch_until(
        discovery.list_namespaced_endpoint_slice,
        namespace,
        lists_the_pod_ready,
        label_selector="kubernetes.io/service-name=smoke",
    )
    assert endpoint_slice.ports is not None
    assert endpoint_slice.ports[0].port == 8069

    deployment: client.V1Deployment = watch_until(
        apps.list_namespaced_deployment,
        namespace,
        lambda d: d.status is not None and (d.status.available_replicas or 0) == 1,
        field_selector="metadata.name=smoke",
    )
    assert deployment.status is not None
    assert deployment.status.ready_replicas == 1


def test_the_services_own_deployment_pods_are_played_by_kwok_not_run_by_the_job_runner(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    """deploy/'s consumers (scaled by KEDA) carry the service's name label, as its Jobs' pods
    do; only the Jobs' pods are run on the host."""
    core, apps = client.CoreV1Api(k8s_api), client.AppsV1Api(k8s_api)
    ours = {"app.kubernetes.io/name": "instance-service", "app.kubernetes.io/component": "x"}
    apps.create_namespaced_deployment(namespace, _deployment(ours))

    pod: client.V1Pod = watch_until(
        core.list_namespaced_pod,
        namespace,
        lambda p: p.status is not None and _has_condition(p.status.conditions, "Ready"),
        label_selector="app.kubernetes.io/component=x",
    )
    assert pod.status is not None
    assert pod.status.phase == "Running"
    assert pod.metadata is not None
    run_log = default_layout().logs / "jobs" / f"{namespace}_{pod.metadata.name}.log"
    assert not run_log.exists()


def test_job_reaches_complete(k8s_api: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(k8s_api)
    batch.create_namespaced_job(namespace, _job())

    job: client.V1Job = watch_until(
        batch.list_namespaced_job,
        namespace,
        lambda j: j.status is not None and _has_condition(j.status.conditions, "Complete"),
        field_selector="metadata.name=smoke",
    )
    assert job.status is not None
    assert job.status.succeeded == 1
    assert not job.status.failed


def test_a_pod_labelled_never_ready_runs_but_is_not_ready(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(k8s_api)
    labels = {**LABELS, NEVER_READY_LABEL: NEVER_READY_VALUE}
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="never", labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="web", image=IMAGE)]),
    )
    core.create_namespaced_pod(namespace, pod)

    started: client.V1Pod = watch_until(
        core.list_namespaced_pod,
        namespace,
        lambda p: p.status is not None and p.status.phase == "Running" and bool(p.status.pod_ip),
        field_selector="metadata.name=never",
    )
    assert started.status is not None
    ready = [c for c in started.status.conditions or [] if c.type == "Ready"]
    assert [c.status for c in ready] == ["False"]
    assert started.status.container_statuses is not None
    assert started.status.container_statuses[0].ready is False


def _crd(plural: str) -> dict[str, Any]:
    group = "race.instance-service.test"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": plural[:-1].title()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }


def test_devstack_waits_for_a_crd_created_after_the_wait_began() -> None:
    # Issue 16, item 9: `kubectl wait --for=condition=Established` on a CRD that has no
    # conditions yet (or does not exist yet) fails at once; the first `up` on a new machine
    # stopped there. The fault, made deterministic: the CRD is created while the wait runs.
    plane = ControlPlane(default_layout())
    crd = _crd(f"races{uuid.uuid4().hex[:8]}")
    name = crd["metadata"]["name"]
    creator = threading.Timer(
        1.0, lambda: plane.kubectl("create", "-f", "-", stdin=json.dumps(crd))
    )
    creator.start()
    try:
        started = time.monotonic()
        plane.wait_established((name,), timeout=30)
        assert time.monotonic() - started >= 1.0  # it did wait for the CRD to appear
        shown = json.loads(plane.kubectl("get", "crd", name, "-o", "json"))
        assert {"type": "Established", "status": "True"}.items() <= next(
            c for c in shown["status"]["conditions"] if c["type"] == "Established"
        ).items()
    finally:
        creator.join()
        plane.kubectl("delete", "crd", name, "--ignore-not-found")


def test_devstack_names_a_crd_that_never_becomes_established() -> None:
    plane = ControlPlane(default_layout())
    with pytest.raises(StackError, match=r"not Established after 1 s: nothing\.example\.com"):
        plane.wait_established(("nothing.example.com",), timeout=1)


def _certificate(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_cert_managers_crds_make_the_api_server_validate_certificates(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(k8s_api)
    good = _certificate(
        "shop",
        secretName="shop-tls",
        dnsNames=["shop.customer.test"],
        issuerRef={"name": "platform", "kind": "ClusterIssuer", "group": "cert-manager.io"},
    )
    created: Any = custom.create_namespaced_custom_object(
        "cert-manager.io", "v1", namespace, "certificates", good, dry_run="All"
    )
    assert created["spec"]["secretName"] == "shop-tls"
    with pytest.raises(client.ApiException) as refused:
        custom.create_namespaced_custom_object(
            "cert-manager.io",
            "v1",
            namespace,
            "certificates",
            _certificate("bad", dnsNames=["shop.customer.test"]),
            dry_run="All",
        )
    assert refused.value.status == 422
    assert "spec.issuerRef: Required value" in str(refused.value.body)
