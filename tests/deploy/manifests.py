"""deploy/ as the cluster would get it: rendered by the kubectl built for the local stack (its
kustomize), and the ServiceAccounts it defines turned into API clients holding their tokens."""

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from devstack.controlplane import ControlPlane
from devstack.layout import REPO_ROOT, default_layout

DEPLOY = REPO_ROOT / "deploy"
EXAMPLE = DEPLOY / "overlays" / "example"
BASE = DEPLOY / "base"
SERVICE_NAMESPACE = "instance-service"

Document = dict[str, Any]


def kubectl(*args: str, stdin: str | None = None) -> str:
    """Run the stack's kubectl (admin kubeconfig); its stdout."""
    return ControlPlane(default_layout()).kubectl(*args, stdin=stdin)


def rendered(directory: Path = EXAMPLE) -> list[Document]:
    """The objects a kustomization renders to."""
    return [doc for doc in yaml.safe_load_all(kubectl("kustomize", str(directory))) if doc]


def one(documents: list[Document], kind: str, name: str) -> Document:
    """The object of this kind and name."""
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def service_account_api(
    admin: client.ApiClient, namespace: str, name: str = "instance-service"
) -> client.ApiClient:
    """An API client authenticated as deploy/'s ServiceAccount `name`, bound by deploy/'s
    Role(s) of the same name, all moved into `namespace` (which stands for both the tenant
    and the service namespace). Nothing else is granted to it."""
    documents = rendered()
    binding = _moved(one(documents, "RoleBinding", name), namespace)
    for subject in binding["subjects"]:
        assert subject["namespace"] == SERVICE_NAMESPACE
        subject["namespace"] = namespace
    moved = [
        _moved(one(documents, "ServiceAccount", name), namespace),
        _moved(one(documents, "Role", name), namespace),
        binding,
    ]
    kubectl(
        "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": moved})
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    answer = client.CoreV1Api(admin).create_namespaced_service_account_token(
        name, namespace, request
    )
    assert answer.status is not None
    assert answer.status.token
    return token_api(admin, answer.status.token)


def token_api(admin: client.ApiClient, token: str) -> client.ApiClient:
    """A client for the same API server presenting only a bearer token."""
    configuration = client.Configuration()
    configuration.host = admin.configuration.host
    configuration.ssl_ca_cert = admin.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def _moved(document: Document, namespace: str) -> Document:
    moved = copy.deepcopy(document)
    moved["metadata"]["namespace"] = namespace
    return moved
