"""The kinds of object the service touches, each a typed constant: `get(DEPLOYMENT, name)` is a
`V1Deployment`, checked by mypy, where a kind named by a string could answer anything.

A kind carries its name (as in manifests, request counts and metric labels) and how the typed
client reaches it: its API group class and the suffix of its methods (`read_` + suffix, ...).
The class is named, not imported: the typed API classes take most of a second to import (every
method is wrapped in a pydantic validator), a cost a consumer starting from zero should pay only
when a command first needs it. The model classes are imported for the type checker only, for the
same reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from kubernetes import client

if TYPE_CHECKING:
    from kubernetes.client import (
        V1Deployment,
        V1Ingress,
        V1Job,
        V1NetworkPolicy,
        V1ObjectMeta,
        V1PersistentVolumeClaim,
        V1Pod,
        V1Scale,
        V1Secret,
        V1Service,
    )

T_co = TypeVar("T_co", covariant=True)


class Object(Protocol):
    """What every object the typed client answers (V1Pod, V1Job, ...) has."""

    @property
    def metadata(self) -> V1ObjectMeta | None: ...


def name_of(obj: Object) -> str:
    """The object's name."""
    return str(obj.metadata.name) if obj.metadata is not None else ""


def uid_of(obj: Object) -> str | None:
    """The object's uid: another object by the same name has another one."""
    return obj.metadata.uid if obj.metadata is not None else None


@dataclass(frozen=True)
class Kind(Generic[T_co]):
    """One kind of namespaced object; `T_co` is the model class the typed client answers."""

    name: str
    api_class: str
    suffix: str
    model: str
    """The typed client's model class name (e.g. "V1Job"), to read the API's JSON as one."""

    def api(self, api_client: client.ApiClient) -> object:
        """The API group object (e.g. a CoreV1Api) for this client."""
        api_group: Callable[[client.ApiClient], object] = getattr(client, self.api_class)
        return api_group(api_client)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class CustomKind(Kind[T_co]):
    """A kind of a CustomResourceDefinition, reached through the client's CustomObjectsApi as
    if it were typed: the same verbs and arguments (name, namespace, body), answered as the
    API's JSON (its `model` is "object")."""

    group: str = ""
    version: str = ""
    plural: str = ""

    def api(self, api_client: client.ApiClient) -> object:
        """An object with the typed client's methods for this kind (`read_` + suffix, ...)."""
        return _CustomObjects(client.CustomObjectsApi(api_client), self)


class _CustomObjects:
    """The typed client's method names for one custom kind, on CustomObjectsApi."""

    _VERBS: ClassVar[dict[str, str]] = {
        "read": "get_namespaced_custom_object",
        "patch": "patch_namespaced_custom_object",
        "delete": "delete_namespaced_custom_object",
        "create": "create_namespaced_custom_object",
        "list": "list_namespaced_custom_object",
    }

    def __init__(self, api: client.CustomObjectsApi, kind: CustomKind[object]) -> None:
        self._api = api
        self._kind = kind

    def __getattr__(self, attribute: str) -> Callable[..., object]:
        kind = self._kind
        for verb, method in self._VERBS.items():
            prefix = f"{verb}_{kind.suffix}"
            if attribute.startswith(prefix):
                variant = attribute.removeprefix(prefix)
                target = getattr(self._api, method + variant)
                break
        else:
            raise AttributeError(attribute)
        path = (kind.group, kind.version)

        @functools.wraps(target)  # the watch reads the item type from the docstring
        def call(*arguments: Any, **options: Any) -> object:
            if verb == "list":  # (namespace)
                return target(*path, arguments[0], kind.plural, **options)
            if verb == "create":  # (namespace, body)
                return target(*path, arguments[0], kind.plural, *arguments[1:], **options)
            name, namespace, *body = arguments  # (name, namespace[, body])
            return target(*path, namespace, kind.plural, name, *body, **options)

        return call


SECRET: Kind[V1Secret] = Kind("Secret", "CoreV1Api", "namespaced_secret", "V1Secret")
PVC: Kind[V1PersistentVolumeClaim] = Kind(
    "PersistentVolumeClaim",
    "CoreV1Api",
    "namespaced_persistent_volume_claim",
    "V1PersistentVolumeClaim",
)
SERVICE: Kind[V1Service] = Kind("Service", "CoreV1Api", "namespaced_service", "V1Service")
POD: Kind[V1Pod] = Kind("Pod", "CoreV1Api", "namespaced_pod", "V1Pod")
JOB: Kind[V1Job] = Kind("Job", "BatchV1Api", "namespaced_job", "V1Job")
DEPLOYMENT: Kind[V1Deployment] = Kind(
    "Deployment", "AppsV1Api", "namespaced_deployment", "V1Deployment"
)
INGRESS: Kind[V1Ingress] = Kind("Ingress", "NetworkingV1Api", "namespaced_ingress", "V1Ingress")
NETWORK_POLICY: Kind[V1NetworkPolicy] = Kind(
    "NetworkPolicy", "NetworkingV1Api", "namespaced_network_policy", "V1NetworkPolicy"
)
DEPLOYMENT_SCALE: Kind[V1Scale] = Kind(
    "Deployment/scale", "AppsV1Api", "namespaced_deployment_scale", "V1Scale"
)
"""A Deployment's `/scale` subresource (counted apart from the Deployment itself)."""
CERTIFICATE: CustomKind[dict[str, Any]] = CustomKind(
    "Certificate",
    "CustomObjectsApi",
    "namespaced_certificate",
    "object",
    group="cert-manager.io",
    version="v1",
    plural="certificates",
)
"""cert-manager's Certificate: one per customer domain (k8s/certificates.py)."""

KINDS: dict[str, Kind[Any]] = {
    kind.name: kind
    for kind in (SECRET, PVC, SERVICE, POD, JOB, DEPLOYMENT, INGRESS, NETWORK_POLICY, CERTIFICATE)
}
"""The kinds by name, for objects whose kind is known only from a manifest or a document."""


def kind_named(name: str) -> Kind[Any]:
    """The kind a manifest's `kind` names (KeyError for one the service does not touch)."""
    return KINDS[name]
