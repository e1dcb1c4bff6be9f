"""Is an instance serving? GET /web/health over its Service's DNS name, with a deadline.

Name resolution goes through a resolver. The default, `SystemResolver`, leaves it to the system
(in a cluster: CoreDNS). `EndpointSliceResolver` follows the real chain instead, Service ->
EndpointSlice -> a Ready pod's IP, and sends the request to a stand-in that plays that pod
(the local stack has no container runtime); a Service whose selector or port is wrong has no
ready endpoint, so the check fails exactly as it would in a cluster.
"""

import http.client
import json
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import urllib3.exceptions
from kubernetes import client
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from k8s.errors import Target, classify
from k8s.settings import KubernetesSettings
from messages.errors import PermanentError, RetryableError

tracer = trace.get_tracer("instance_service.health")

POD_IP_HEADER = "X-Devstack-Pod-IP"
POD_PORT_HEADER = "X-Devstack-Pod-Port"
POD_HEADER = "X-Devstack-Pod"  # namespace/name: pod IPs of deleted pods are handed out again


@dataclass(frozen=True)
class Route:
    """Where to send a request for a name, and what to add to it."""

    host: str
    port: int
    headers: dict[str, str]


class Resolver(Protocol):
    """Turns a Service DNS name and port into a route, or None when nothing serves it."""

    def route(self, host: str, port: int) -> Route | None:
        """The route for `host:port`."""


class SystemResolver:
    """The system's resolver: connect to the name itself."""

    def route(self, host: str, port: int) -> Route | None:
        """Connect to the name as given."""
        return Route(host, port, {})


class EndpointSliceResolver:
    """Service -> EndpointSlice -> Ready pod IP and port, delivered to a stand-in on loopback."""

    def __init__(self, api: client.ApiClient, standin_host: str, standin_port: int) -> None:
        self.api = api  # the typed API classes are made on first use (see k8s.kinds.Kind)
        self.standin = (standin_host, standin_port)

    def route(self, host: str, port: int) -> Route | None:
        """The first ready endpoint behind the Service's `port`, or None."""
        parts = host.split(".")
        if len(parts) < 3 or parts[2] != "svc":
            return None
        service_name, namespace = parts[0], parts[1]
        try:
            core, discovery = client.CoreV1Api(self.api), client.DiscoveryV1Api(self.api)
            service = core.read_namespaced_service(service_name, namespace)
            selector = f"kubernetes.io/service-name={service_name}"
            slices = discovery.list_namespaced_endpoint_slice(
                namespace, label_selector=selector
            ).items
        except client.ApiException as error:
            if error.status == 404:
                return None
            target = Target("resolve", "Service", service_name, namespace)
            raise (classify(error, target) or error) from error
        spec = service.spec
        named = [p.name for p in (spec.ports if spec and spec.ports else []) if p.port == port]
        if not named:
            return None
        for endpoint_slice in slices:
            # A slice's ports carry the Service port's name and the pod port it leads to.
            pod_ports = [p.port for p in endpoint_slice.ports or [] if p.name == named[0]]
            if not pod_ports:
                continue
            for endpoint in endpoint_slice.endpoints or []:
                ready = endpoint.conditions is not None and endpoint.conditions.ready is True
                if ready and endpoint.addresses:
                    headers = {
                        POD_IP_HEADER: endpoint.addresses[0],
                        POD_PORT_HEADER: str(pod_ports[0]),
                    }
                    ref = endpoint.target_ref
                    if ref is not None and ref.kind == "Pod":
                        headers[POD_HEADER] = f"{ref.namespace or namespace}/{ref.name}"
                    return Route(*self.standin, headers)
        return None


@dataclass(frozen=True)
class HealthResult:
    """The last answer of a health check."""

    healthy: bool
    detail: str


def check_health(
    url: str, resolver: Resolver, *, request_timeout: float = 5.0, deadline_seconds: float = 60.0
) -> HealthResult:
    """Ask `<url>/web/health` until it passes or the deadline; 200 with status pass is healthy."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    end = time.monotonic() + deadline_seconds
    last = HealthResult(False, "not asked yet")
    with tracer.start_as_current_span("health check", attributes={"url.full": url}) as span:
        attempts = 0
        while True:
            attempts += 1
            last = _ask(host, port, resolver, request_timeout)
            if last.healthy or time.monotonic() >= end:
                span.set_attributes({"instance_service.attempts": attempts})
                if not last.healthy:
                    span.set_status(StatusCode.ERROR, last.detail[:200])
                return last
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))  # between HTTP attempts


def _ask(host: str, port: int, resolver: Resolver, timeout: float) -> HealthResult:
    """One attempt; a failure to resolve or to talk HTTP is a failed attempt, not an error."""
    try:
        route = resolver.route(host, port)
    except (RetryableError, PermanentError, urllib3.exceptions.HTTPError, OSError) as error:
        return HealthResult(False, f"cannot resolve {host}:{port}: {error}")
    if route is None:
        return HealthResult(False, f"{host}:{port} has no ready endpoint")
    connection = http.client.HTTPConnection(route.host, route.port, timeout=timeout)
    try:
        connection.request("GET", "/web/health", headers={"Host": host, **route.headers})
        response = connection.getresponse()
        body = response.read(4096)
    except (OSError, http.client.HTTPException) as error:
        return HealthResult(False, f"{host}:{port}: {type(error).__name__}: {error}")
    finally:
        connection.close()
    if response.status != 200:
        return HealthResult(False, f"{host}:{port}/web/health answered {response.status}")
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        status = None
    if status != "pass":
        return HealthResult(False, f"{host}:{port}/web/health said {body[:100]!r}")
    return HealthResult(True, "pass")


def resolver_for(settings: KubernetesSettings, api: client.ApiClient) -> Resolver:
    """The resolver the settings name."""
    if settings.health_resolver == "endpointslice":
        return EndpointSliceResolver(api, settings.standin_host, settings.standin_port)
    return SystemResolver()
