"""The one module family that talks to the Kubernetes API: apply, scale, restart, delete, wait.

Objects are applied with server-side apply under one field manager (re-applying the same
manifest changes nothing); replicas change through the `/scale` subresource; a restart is a new
pod-template annotation; waiting is list + watch from the list's resourceVersion (a 410 relists),
never a sleep loop. Every failure goes through the one table in k8s/errors.py. Requests are
counted per (verb, kind) for benchmarks, and each one is a CLIENT span and a count in the
`instance_service.kubernetes.requests` metric with its HTTP status code.
"""

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import urllib3.exceptions
from kubernetes import client, watch
from kubernetes.client import ApiException
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from k8s.errors import Target, classify
from k8s.workload import Manifest
from telemetry.metrics import METRICS

tracer = trace.get_tracer("instance_service.kubernetes")

FIELD_MANAGER = "instance-service"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True)
class Resource:
    """How the typed client reaches one kind: its API group class and method suffix.

    The class is named, not imported: the typed API classes take most of a second to import
    (every method is wrapped in a pydantic validator), a cost a consumer starting from zero
    should pay only when a command first needs it.
    """

    api_class: str
    suffix: str

    def api(self, api_client: client.ApiClient) -> Any:
        """The API group object for this client."""
        return getattr(client, self.api_class)(api_client)


RESOURCES = {
    "Secret": Resource("CoreV1Api", "namespaced_secret"),
    "PersistentVolumeClaim": Resource("CoreV1Api", "namespaced_persistent_volume_claim"),
    "Service": Resource("CoreV1Api", "namespaced_service"),
    "Pod": Resource("CoreV1Api", "namespaced_pod"),
    "Job": Resource("BatchV1Api", "namespaced_job"),
    "Deployment": Resource("AppsV1Api", "namespaced_deployment"),
    "Ingress": Resource("NetworkingV1Api", "namespaced_ingress"),
    "NetworkPolicy": Resource("NetworkingV1Api", "namespaced_network_policy"),
    "Deployment/scale": Resource("AppsV1Api", "namespaced_deployment_scale"),
}


def rolled_out(replicas: int) -> Callable[[Any], bool]:
    """A Deployment's current template runs `replicas` ready pods (as `kubectl rollout status`)."""

    def check(deployment: Any) -> bool:
        status, meta = deployment.status, deployment.metadata
        if status is None or meta is None or status.observed_generation != meta.generation:
            return False
        counts = (
            status.replicas or 0,
            status.updated_replicas or 0,
            status.ready_replicas or 0,
            status.available_replicas or 0,
        )
        return counts == (replicas,) * 4

    return check


class WaitTimeoutError(Exception):
    """The awaited state did not come before the deadline; `last` is what was seen last."""

    def __init__(self, message: str, last: Any) -> None:
        super().__init__(message)
        self.last = last


class Kubernetes:
    """Typed, counted, error-mapped access to the objects of the tenants."""

    def __init__(self, api: client.ApiClient, request_timeout: float = 10.0) -> None:
        self.api = api
        self.timeout = request_timeout
        self.requests: Counter[tuple[str, str]] = Counter()

    def _method(self, verb: str, kind: str) -> Callable[..., Any]:
        resource = RESOURCES[kind]
        return cast(
            Callable[..., Any], getattr(resource.api(self.api), f"{verb}_{resource.suffix}")
        )

    def _method_with_status(self, verb: str, kind: str) -> Callable[..., Any]:
        """The variant answering (object, HTTP status code, headers)."""
        resource = RESOURCES[kind]
        method = f"{verb}_{resource.suffix}_with_http_info"
        return cast(Callable[..., Any], getattr(resource.api(self.api), method))

    @contextmanager
    def _watching(self, kind: str) -> Iterator[None]:
        """Count one watch request: 200 once its stream ended or was left, else its error."""
        self.requests[("watch", kind)] += 1
        try:
            yield
        except ApiException as error:
            METRICS.kubernetes_request("watch", kind, error.status or None)
            raise
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as error:
            METRICS.kubernetes_request("watch", kind, None, type(error).__name__)
            raise
        METRICS.kubernetes_request("watch", kind, 200)

    def _call(
        self,
        verb: str,
        kind: str,
        name: str,
        namespace: str,
        *args: Any,
        absent_ok: bool = False,
        raw: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One request: counted, traced, its failure classified. `raw`: answer the decoded
        JSON instead of typed models (a large list is several times faster that way)."""
        self.requests[(verb, kind)] += 1
        target = Target(verb, kind, name, namespace)
        attributes = {"k8s.verb": verb, "k8s.resource": kind, "k8s.namespace.name": namespace}
        with tracer.start_as_current_span(
            f"{verb} {kind}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                if raw:
                    response = self._method(verb, kind)(
                        *args, _request_timeout=self.timeout, _preload_content=False, **kwargs
                    )
                    data, status = json.loads(response.data), response.status
                else:
                    data, status, _headers = self._method_with_status(verb, kind)(
                        *args, _request_timeout=self.timeout, **kwargs
                    )
            except (
                ApiException,
                urllib3.exceptions.HTTPError,
                ConnectionError,
                TimeoutError,
            ) as e:
                if isinstance(e, ApiException) and e.status:
                    span.set_attribute("http.response.status_code", int(e.status))
                    METRICS.kubernetes_request(verb, kind, int(e.status))
                else:
                    METRICS.kubernetes_request(verb, kind, None, type(e).__name__)
                outcome = classify(e, target, deleting=absent_ok or verb == "delete")
                if outcome is None:
                    return None  # 404 where absence is an answer
                span.set_status(StatusCode.ERROR, str(outcome)[:200])
                raise outcome from e
            span.set_attribute("http.response.status_code", int(status))
            METRICS.kubernetes_request(verb, kind, int(status))
            return data

    def apply(self, manifest: Manifest) -> Any:
        """Server-side apply: create or update to exactly this manifest's fields."""
        meta = manifest["metadata"]
        return self._call(
            "patch",
            manifest["kind"],
            meta["name"],
            meta["namespace"],
            meta["name"],
            meta["namespace"],
            manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )

    def get(self, kind: str, name: str, namespace: str) -> Any | None:
        """The object, or None when it does not exist."""
        return self._call("read", kind, name, namespace, name, namespace, absent_ok=True)

    def list_labelled(self, kind: str, namespace: str, label_selector: str) -> list[Any]:
        """Objects of a kind whose labels match."""
        listed = self._call(
            "list", kind, label_selector, namespace, namespace, label_selector=label_selector
        )
        return list(listed.items)

    def documents(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Objects of a kind whose labels match, as manifests (camelCase dicts), in one list
        request however many there are."""
        return list(self.list_raw(kind, namespace, label_selector)["items"])

    def list_raw(self, kind: str, namespace: str, label_selector: str) -> dict[str, Any]:
        """The list as the API's JSON: `items`, and `metadata.resourceVersion` to watch from."""
        listed: dict[str, Any] = self._call(
            "list",
            kind,
            label_selector,
            namespace,
            namespace,
            label_selector=label_selector,
            raw=True,
        )
        return listed

    def list_method(self, kind: str) -> Callable[..., Any]:
        """The typed list call of a kind, for a watch stream."""
        return self._method("list", kind)

    def scale(self, name: str, namespace: str, replicas: int, *, absent_ok: bool = False) -> bool:
        """Set a Deployment's replicas through its scale subresource; False if it is absent
        (only with `absent_ok`: otherwise absence is a permanent failure)."""
        body = {"spec": {"replicas": replicas}}
        answer = self._call(
            "patch", "Deployment/scale", name, namespace, name, namespace, body, absent_ok=absent_ok
        )
        return answer is not None

    def restart(self, name: str, namespace: str, at: datetime | None = None) -> None:
        """Replace a Deployment's pods by changing their template (as `kubectl rollout restart`)."""
        stamp = (at or datetime.now(UTC)).isoformat()
        patch = {
            "spec": {"template": {"metadata": {"annotations": {"odoo.saas/restarted-at": stamp}}}}
        }
        self._call("patch", "Deployment", name, namespace, name, namespace, patch)

    def delete(self, kind: str, name: str, namespace: str) -> None:
        """Delete with its dependants (background propagation); an absent object is fine."""
        self._call(
            "delete", kind, name, namespace, name, namespace, propagation_policy="Background"
        )

    def wait_gone(self, kind: str, name: str, namespace: str, deadline_seconds: float) -> None:
        """Return once the object no longer exists (watching for its deletion)."""
        self._watch(kind, name, namespace, deadline_seconds, done=lambda _type, _obj: False)

    def wait_none(
        self, kind: str, namespace: str, label_selector: str, deadline_seconds: float
    ) -> None:
        """Return once no object matches the labels (pods of a scaled-down Deployment stay
        until they have terminated, after its status already counts zero)."""
        end = time.monotonic() + deadline_seconds
        attributes = {"k8s.resource": kind, "k8s.namespace.name": namespace}
        with tracer.start_as_current_span(f"wait no {kind}", attributes=attributes):
            while (remaining := end - time.monotonic()) > 0:
                listed = self._call(
                    "list",
                    kind,
                    label_selector,
                    namespace,
                    namespace,
                    label_selector=label_selector,
                )
                left = {item.metadata.name for item in listed.items}
                if not left:
                    return
                stream = watch.Watch().stream(
                    self._method("list", kind),
                    namespace,
                    label_selector=label_selector,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=max(1, int(remaining)),
                    _request_timeout=remaining + 5,
                )
                try:
                    with self._watching(kind):
                        for event in stream:
                            name = event["object"].metadata.name
                            if event["type"] == "DELETED":
                                left.discard(name)
                            elif event["type"] == "ADDED":
                                left.add(name)
                            if not left:
                                return
                except ApiException as error:
                    if error.status != 410:
                        target = Target("watch", kind, label_selector, namespace)
                        raise (classify(error, target) or error) from error
                except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError):
                    continue
        raise WaitTimeoutError(
            f"{kind}s matching {label_selector} in {namespace} still exist after "
            f"{deadline_seconds:g} s",
            None,
        )

    def wait_for(
        self,
        kind: str,
        name: str,
        namespace: str,
        condition: Callable[[Any], bool],
        deadline_seconds: float,
    ) -> Any:
        """Return the object once `condition` holds; list, then watch from that list."""
        return self._watch(
            kind,
            name,
            namespace,
            deadline_seconds,
            done=lambda kind_, obj: kind_ in ("ADDED", "MODIFIED") and condition(obj),
            wanted=condition,
        )

    def _watch(
        self,
        kind: str,
        name: str,
        namespace: str,
        deadline_seconds: float,
        done: Callable[[str, Any], bool],
        wanted: Callable[[Any], bool] | None = None,
    ) -> Any:
        """List, then watch from the list's version, until `done` or (without `wanted`) the
        object is gone. A 410 or a broken stream lists again; the deadline bounds it all."""
        attributes = {"k8s.resource": kind, "k8s.namespace.name": namespace, "k8s.name": name}
        with tracer.start_as_current_span(f"wait {kind}", attributes=attributes):
            return self._watch_spanned(kind, name, namespace, deadline_seconds, done, wanted)

    def _watch_spanned(
        self,
        kind: str,
        name: str,
        namespace: str,
        deadline_seconds: float,
        done: Callable[[str, Any], bool],
        wanted: Callable[[Any], bool] | None,
    ) -> Any:
        end = time.monotonic() + deadline_seconds
        selector = f"metadata.name={name}"
        last: Any = None
        while (remaining := end - time.monotonic()) > 0:
            listed = self._call("list", kind, name, namespace, namespace, field_selector=selector)
            if wanted is None and not listed.items:
                return None  # gone
            for item in listed.items:
                last = item
                if wanted is not None and wanted(item):
                    return item
            stream = watch.Watch().stream(
                self._method("list", kind),
                namespace,
                field_selector=selector,
                resource_version=listed.metadata.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=max(1, int(remaining)),
                _request_timeout=remaining + 5,  # a stalled connection cannot outlive the wait
            )
            try:
                with self._watching(kind):
                    for event in stream:
                        if event["type"] == "DELETED" and wanted is None:
                            return None
                        if event["type"] in ("ADDED", "MODIFIED"):
                            last = event["object"]
                        if done(event["type"], event["object"]):
                            return event["object"]
            except ApiException as error:
                if error.status != 410:  # Gone: our version was compacted away; list again
                    outcome = classify(error, Target("watch", kind, name, namespace))
                    raise (outcome or error) from error
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError):
                continue  # the stream broke (an apiserver restart): list again
        what = "still exists" if wanted is None else "did not reach the expected state"
        raise WaitTimeoutError(f"{kind} {namespace}/{name} {what} in {deadline_seconds:g} s", last)
