"""The one module family that talks to the Kubernetes API: apply, scale, restart, delete, wait.

A `Kubernetes` is bound to one namespace (the tenants') and reaches objects by typed kind
(k8s/kinds.py): `get(DEPLOYMENT, name)` answers a `V1Deployment`; a label selector is its own
argument, never a name. Objects are applied with server-side apply under one field manager
(re-applying the same manifest changes nothing); replicas change through the `/scale`
subresource; a restart is a new pod-template annotation; waiting is list + watch from the list's
resourceVersion (a 410 relists), never a sleep loop. Every failure goes through the one table in
k8s/errors.py. Requests are counted per (verb, kind) for benchmarks, and each one is a CLIENT
span and a count in the `instance_service.kubernetes.requests` metric with its HTTP status code.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import urllib3.exceptions
from kubernetes import client, watch
from kubernetes.client import ApiException
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from k8s.errors import Target, classify
from k8s.kinds import DEPLOYMENT, DEPLOYMENT_SCALE, Kind, Object, name_of
from k8s.workload import Manifest
from telemetry.metrics import METRICS

if TYPE_CHECKING:
    from kubernetes.client import V1Deployment, V1ListMeta

tracer = trace.get_tracer("instance_service.kubernetes")

FIELD_MANAGER = "instance-service"
APPLY_PATCH = "application/apply-patch+yaml"

T = TypeVar("T")

Document = dict[str, Any]
"""An object as the API's JSON (camelCase keys): values of every type, as the API sends them."""


class _Listing(Protocol):
    """What every typed list answer (V1PodList, V1JobList, ...) has."""

    @property
    def items(self) -> Sequence[Object]: ...

    @property
    def metadata(self) -> V1ListMeta | None: ...


def rolled_out(replicas: int) -> Callable[[V1Deployment], bool]:
    """A Deployment's current template runs `replicas` ready pods (as `kubectl rollout status`)."""

    def check(deployment: V1Deployment) -> bool:
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

    def __init__(self, message: str, last: object) -> None:
        super().__init__(message)
        self.last = last


class Kubernetes:
    """Typed, counted, error-mapped access to the objects of one namespace (the tenants')."""

    def __init__(
        self, api: client.ApiClient, namespace: str, request_timeout: float = 10.0
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.timeout = request_timeout
        self.requests: Counter[tuple[str, str]] = Counter()

    def _method(self, verb: str, kind: Kind[object], variant: str = "") -> Callable[..., object]:
        """The typed client's method for `verb` on `kind` (made on first use, see Kind)."""
        method: Callable[..., object] = getattr(
            kind.api(self.api), f"{verb}_{kind.suffix}{variant}"
        )
        return method

    @contextmanager
    def _watching(self, kind: Kind[object]) -> Iterator[None]:
        """Count one watch request: 200 once its stream ended or was left, else its error."""
        self.requests[("watch", kind.name)] += 1
        try:
            yield
        except ApiException as error:
            METRICS.kubernetes_request("watch", kind.name, error.status or None)
            raise
        except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as error:
            METRICS.kubernetes_request("watch", kind.name, None, type(error).__name__)
            raise
        METRICS.kubernetes_request("watch", kind.name, 200)

    def _on(
        self,
        verb: str,
        kind: Kind[object],
        name: str,
        *body: object,
        absent_ok: bool = False,
        **options: object,
    ) -> object:
        """A request about the object `name` (its body, if any, after name and namespace)."""
        arguments = (name, self.namespace, *body)
        return self._call(verb, kind, arguments, name, options, absent_ok=absent_ok)

    def _list(
        self, kind: Kind[object], about: str, *, raw: bool = False, **selector: str
    ) -> object:
        """The kind's list in the namespace, narrowed by a label or field `selector`."""
        return self._call("list", kind, (self.namespace,), about, dict(selector), raw=raw)

    def _call(
        self,
        verb: str,
        kind: Kind[object],
        arguments: tuple[object, ...],
        about: str,
        options: dict[str, object],
        *,
        absent_ok: bool = False,
        raw: bool = False,
    ) -> object:
        """One request: counted, traced, its failure classified (naming `about`). `raw`: answer
        the decoded JSON instead of typed models (a large list is several times faster that way)."""
        self.requests[(verb, kind.name)] += 1
        target = Target(verb, kind.name, about, self.namespace)
        attributes = {
            "k8s.verb": verb,
            "k8s.resource": kind.name,
            "k8s.namespace.name": self.namespace,
        }
        with tracer.start_as_current_span(
            f"{verb} {kind}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                if raw:
                    response = cast(
                        urllib3.BaseHTTPResponse,
                        self._method(verb, kind)(
                            *arguments,
                            _request_timeout=self.timeout,
                            _preload_content=False,
                            **options,
                        ),
                    )
                    data, status = json.loads(response.data), response.status
                else:
                    data, status, _headers = cast(
                        tuple[object, int, object],
                        self._method(verb, kind, "_with_http_info")(
                            *arguments, _request_timeout=self.timeout, **options
                        ),
                    )
            except (
                ApiException,
                urllib3.exceptions.HTTPError,
                ConnectionError,
                TimeoutError,
            ) as e:
                if isinstance(e, ApiException) and e.status:
                    span.set_attribute("http.response.status_code", int(e.status))
                    METRICS.kubernetes_request(verb, kind.name, int(e.status))
                else:
                    METRICS.kubernetes_request(verb, kind.name, None, type(e).__name__)
                outcome = classify(e, target, deleting=absent_ok or verb == "delete")
                if outcome is None:
                    return None  # 404 where absence is an answer
                span.set_status(StatusCode.ERROR, str(outcome)[:200])
                raise outcome from e
            span.set_attribute("http.response.status_code", int(status))
            METRICS.kubernetes_request(verb, kind.name, int(status))
            return data

    def apply(self, kind: Kind[T], manifest: Manifest) -> T:
        """Server-side apply: create or update to exactly this manifest's fields."""
        meta = manifest["metadata"]
        if manifest["kind"] != kind.name or meta.get("namespace", self.namespace) != self.namespace:
            raise ValueError(
                f"a {manifest['kind']} for namespace {meta.get('namespace')} is not a {kind} "
                f"of namespace {self.namespace}"
            )
        applied = self._on(
            "patch",
            kind,
            meta["name"],
            manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )
        return cast(T, applied)

    def get(self, kind: Kind[T], name: str) -> T | None:
        """The object, or None when it does not exist."""
        return cast("T | None", self._on("read", kind, name, absent_ok=True))

    def objects(self, kind: Kind[T], *, selector: str) -> list[T]:
        """Objects of a kind whose labels match the label `selector`."""
        return cast("list[T]", _items_of(self._list(kind, selector, label_selector=selector)))

    def documents(self, kind: Kind[object], *, selector: str) -> list[Document]:
        """Objects of a kind whose labels match, as manifests (camelCase dicts), in one list
        request however many there are."""
        return list(self.list_raw(kind, selector=selector)["items"])

    def list_raw(self, kind: Kind[object], *, selector: str) -> Document:
        """The list as the API's JSON: `items`, and `metadata.resourceVersion` to watch from."""
        return cast(Document, self._list(kind, selector, raw=True, label_selector=selector))

    def decode(self, kind: Kind[T], document: Document) -> T:
        """An object as the API's JSON (a watch event's, say) as the typed client's model."""
        decoded = self.api.deserialize(json.dumps(document), kind.model, "application/json")
        return cast(T, decoded)

    def list_method(self, kind: Kind[object]) -> Callable[..., object]:
        """The typed list call of a kind, for a watch stream (its first argument: namespace)."""
        return self._method("list", kind)

    def scale(self, name: str, replicas: int, *, absent_ok: bool = False) -> bool:
        """Set a Deployment's replicas through its scale subresource; False if it is absent
        (only with `absent_ok`: otherwise absence is a permanent failure)."""
        body = {"spec": {"replicas": replicas}}
        answer = self._on("patch", DEPLOYMENT_SCALE, name, body, absent_ok=absent_ok)
        return answer is not None

    def restart(self, name: str, at: datetime | None = None) -> None:
        """Replace a Deployment's pods by changing their template (as `kubectl rollout restart`)."""
        stamp = (at or datetime.now(UTC)).isoformat()
        patch = {
            "spec": {"template": {"metadata": {"annotations": {"odoo.saas/restarted-at": stamp}}}}
        }
        self._on("patch", DEPLOYMENT, name, patch)

    def delete(self, kind: Kind[object], name: str) -> None:
        """Delete with its dependants (background propagation); an absent object is fine."""
        self._on("delete", kind, name, propagation_policy="Background")

    def wait_gone(self, kind: Kind[object], name: str, deadline_seconds: float) -> None:
        """Return once the object no longer exists (watching for its deletion)."""
        self._watch(kind, name, deadline_seconds, done=lambda _type, _obj: False)

    def wait_none(self, kind: Kind[object], *, selector: str, deadline_seconds: float) -> None:
        """Return once no object matches the label `selector` (pods of a scaled-down Deployment
        stay until they have terminated, after its status already counts zero)."""
        namespace = self.namespace
        end = time.monotonic() + deadline_seconds
        attributes = {"k8s.resource": kind.name, "k8s.namespace.name": namespace}
        with tracer.start_as_current_span(f"wait no {kind}", attributes=attributes):
            while (remaining := end - time.monotonic()) > 0:
                listed = cast(_Listing, self._list(kind, selector, label_selector=selector))
                left = {name_of(item) for item in listed.items}
                if not left:
                    return
                stream = watch.Watch().stream(
                    self._method("list", kind),
                    namespace,
                    label_selector=selector,
                    resource_version=_version_of(listed),
                    timeout_seconds=max(1, int(remaining)),
                    _request_timeout=remaining + 5,
                )
                try:
                    with self._watching(kind):
                        for event in stream:
                            name = name_of(event["object"])
                            if event["type"] == "DELETED":
                                left.discard(name)
                            elif event["type"] == "ADDED":
                                left.add(name)
                            if not left:
                                return
                except ApiException as error:
                    if error.status != 410:
                        target = Target("watch", kind.name, selector, namespace)
                        raise (classify(error, target) or error) from error
                except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError):
                    continue
        raise WaitTimeoutError(
            f"{kind}s matching {selector} in {namespace} still exist after {deadline_seconds:g} s",
            None,
        )

    def wait_for(
        self,
        kind: Kind[T],
        name: str,
        condition: Callable[[T], bool],
        deadline_seconds: float,
    ) -> T:
        """Return the object once `condition` holds; list, then watch from that list."""

        def holds(obj: object) -> bool:
            return condition(cast(T, obj))

        found = self._watch(
            kind,
            name,
            deadline_seconds,
            done=lambda kind_, obj: kind_ in ("ADDED", "MODIFIED") and holds(obj),
            wanted=holds,
        )
        return cast(T, found)

    def _watch(
        self,
        kind: Kind[object],
        name: str,
        deadline_seconds: float,
        done: Callable[[str, object], bool],
        wanted: Callable[[object], bool] | None = None,
    ) -> object:
        """List, then watch from the list's version, until `done` or (without `wanted`) the
        object is gone. A 410 or a broken stream lists again; the deadline bounds it all."""
        attributes = {
            "k8s.resource": kind.name,
            "k8s.namespace.name": self.namespace,
            "k8s.name": name,
        }
        with tracer.start_as_current_span(f"wait {kind}", attributes=attributes):
            return self._watch_spanned(kind, name, deadline_seconds, done, wanted)

    def _watch_spanned(
        self,
        kind: Kind[object],
        name: str,
        deadline_seconds: float,
        done: Callable[[str, object], bool],
        wanted: Callable[[object], bool] | None,
    ) -> object:
        namespace = self.namespace
        end = time.monotonic() + deadline_seconds
        selector = f"metadata.name={name}"
        last: object = None
        while (remaining := end - time.monotonic()) > 0:
            listed = self._list(kind, name, field_selector=selector)
            items = _items_of(listed)
            if wanted is None and not items:
                return None  # gone
            for item in items:
                last = item
                if wanted is not None and wanted(item):
                    return item
            stream = watch.Watch().stream(
                self._method("list", kind),
                namespace,
                field_selector=selector,
                resource_version=_version_of(listed),
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
                    outcome = classify(error, Target("watch", kind.name, name, namespace))
                    raise (outcome or error) from error
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError):
                continue  # the stream broke (an apiserver restart): list again
        what = "still exists" if wanted is None else "did not reach the expected state"
        raise WaitTimeoutError(f"{kind} {namespace}/{name} {what} in {deadline_seconds:g} s", last)


def _items_of(listed: object) -> list[object]:
    """A list's objects: typed models, or a custom kind's JSON."""
    if isinstance(listed, dict):
        return list(listed["items"])
    return list(cast(_Listing, listed).items)


def _version_of(listed: object) -> str | None:
    """Where a watch resumes after this list (typed, or a custom kind's JSON)."""
    if isinstance(listed, dict):
        version = listed.get("metadata", {}).get("resourceVersion")
        return str(version) if version else None
    metadata = cast(_Listing, listed).metadata
    return metadata.resource_version if metadata is not None else None
