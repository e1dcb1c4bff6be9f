"""The health check follows Service -> EndpointSlice -> Ready pod, answered by the stand-in."""

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, watch

from devstack.layout import default_layout
from k8s.apply import Kubernetes, rolled_out
from k8s.exposure import build_service
from k8s.health import EndpointSliceResolver, check_health
from k8s.kinds import DEPLOYMENT, PVC, SERVICE
from k8s.settings import TenantSettings
from k8s.workload import build_deployment, build_volume
from tests.integration.kube_wait import watch_until
from tests.tenant_specs import tenant_spec

pytestmark = pytest.mark.k8s

# Fresh names each run: no controller state carries over.
SPEC = tenant_spec(
    instance_id=str(uuid.uuid4()), subdomain="health", cpu_millicores=500, memory_mib=1024
)
TENANTS = TenantSettings()


def _serving(k8s_api: client.ApiClient, namespace: str, pod_labels: dict[str, str]) -> Kubernetes:
    kube = Kubernetes(k8s_api, namespace)
    deployment: dict[str, Any] = build_deployment(SPEC, TENANTS, namespace, replicas=1)
    deployment["spec"]["template"]["metadata"]["labels"].update(pod_labels)
    # Service first, as the provision handler does: the EndpointSlice controller maps a pod's
    # readiness change to Services through its Service cache, and a Service that arrives in
    # that cache after the pod went Ready may be left with a not-ready endpoint.
    kube.apply(SERVICE, build_service(SPEC, namespace))
    kube.apply(PVC, build_volume(SPEC, TENANTS, namespace))
    kube.apply(DEPLOYMENT, deployment)
    kube.wait_for(DEPLOYMENT, SPEC.names.base, rolled_out(1), deadline_seconds=60)
    # The EndpointSlice controller follows the rollout a moment later: wait for it (watching).
    watch_until(
        client.DiscoveryV1Api(k8s_api).list_namespaced_endpoint_slice,
        namespace,
        lambda s: any(e.conditions and e.conditions.ready for e in s.endpoints or []),
        label_selector=f"kubernetes.io/service-name={SPEC.names.base}",
    )
    return kube


def _resolver(k8s_api: client.ApiClient) -> EndpointSliceResolver:
    return EndpointSliceResolver(k8s_api, "127.0.0.1", default_layout().ports.odoo_standin)


def _until_no_ready_endpoint(k8s_api: client.ApiClient, namespace: str) -> None:
    """Wait (watching) until the EndpointSlice controller has caught up with a change."""

    def none_ready(endpoint_slice: client.V1EndpointSlice) -> bool:
        serves_8069 = any(p.port == 8069 for p in endpoint_slice.ports or [])
        ready = [e for e in endpoint_slice.endpoints or [] if e.conditions and e.conditions.ready]
        return not (serves_8069 and ready)

    watch_until(
        client.DiscoveryV1Api(k8s_api).list_namespaced_endpoint_slice,
        namespace,
        none_ready,
        label_selector=f"kubernetes.io/service-name={SPEC.names.base}",
    )


def _until_all_slices(
    k8s_api: client.ApiClient, namespace: str, condition: Callable[[list[Any]], bool]
) -> None:
    """Watch the Service's EndpointSlices until the whole set satisfies `condition`."""
    discovery = client.DiscoveryV1Api(k8s_api)
    selector = f"kubernetes.io/service-name={SPEC.names.base}"
    current: dict[str, Any] = {}
    for event in watch.Watch().stream(
        discovery.list_namespaced_endpoint_slice,
        namespace,
        label_selector=selector,
        timeout_seconds=60,
    ):
        name = event["object"].metadata.name
        if event["type"] == "DELETED":
            current.pop(name, None)
        else:
            current[name] = event["object"]
        if condition(list(current.values())):
            return
    raise TimeoutError(f"EndpointSlices never settled: {list(current)}")


def _check(k8s_api: client.ApiClient, namespace: str, deadline: float = 20) -> Any:
    url = SPEC.names.internal_url(namespace)
    return check_health(url, _resolver(k8s_api), request_timeout=2, deadline_seconds=deadline)


def test_a_ready_instance_passes(k8s_api: client.ApiClient, namespace: str) -> None:
    _serving(k8s_api, namespace, {})
    result = _check(k8s_api, namespace)
    assert result.healthy, result.detail


def test_a_service_that_selects_nothing_fails(k8s_api: client.ApiClient, namespace: str) -> None:
    kube = _serving(k8s_api, namespace, {})
    service = build_service(SPEC, namespace)
    service["spec"]["selector"] = {**SPEC.selector(), "app.kubernetes.io/instance": "someone-else"}
    kube.apply(SERVICE, service)
    _until_no_ready_endpoint(k8s_api, namespace)
    result = _check(k8s_api, namespace, deadline=3)
    assert not result.healthy
    assert "has no ready endpoint" in result.detail


def test_a_service_on_the_wrong_port_fails(k8s_api: client.ApiClient, namespace: str) -> None:
    kube = _serving(k8s_api, namespace, {})
    service = build_service(SPEC, namespace)
    service["spec"]["ports"][0]["targetPort"] = 9069  # the pod listens on 8069
    kube.apply(SERVICE, service)
    # The controller may replace the slice: wait until every slice leads "http" to 9069.
    _until_all_slices(
        k8s_api,
        namespace,
        lambda slices: (
            bool(slices)
            and all(p.port == 9069 for s in slices for p in s.ports or [] if p.name == "http")
        ),
    )
    result = _check(k8s_api, namespace, deadline=3)
    assert not result.healthy
    assert "answered 502" in result.detail


def test_an_odoo_that_answers_500_fails(k8s_api: client.ApiClient, namespace: str) -> None:
    _serving(k8s_api, namespace, {"devstack.local/health": "fail"})
    result = _check(k8s_api, namespace, deadline=3)
    assert not result.healthy
    assert "answered 500" in result.detail


def test_a_stopped_instance_fails(k8s_api: client.ApiClient, namespace: str) -> None:
    kube = _serving(k8s_api, namespace, {})
    kube.scale(SPEC.names.base, 0)
    kube.wait_for(DEPLOYMENT, SPEC.names.base, rolled_out(0), deadline_seconds=60)
    _until_no_ready_endpoint(k8s_api, namespace)
    result = _check(k8s_api, namespace, deadline=3)
    assert not result.healthy
    assert "has no ready endpoint" in result.detail
