"""The stack's stand-in for cert-manager's issuer: a Certificate the real API server accepted
becomes Ready with a TLS Secret signed by the stack's CA for its names; a domain the issuer is
told to refuse is not Ready, with its reason, and gets no Secret."""

import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client

from devstack.issuer import REFUSED_FILE
from devstack.layout import default_layout

pytestmark = pytest.mark.k8s


def _certificate(name: str, domain: str) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name},
        "spec": {
            "secretName": f"{name}-tls",
            "secretTemplate": {"labels": {"shop": name}},
            "dnsNames": [domain],
            "duration": "2160h0m0s",
            "issuerRef": {"name": "platform", "kind": "ClusterIssuer", "group": "cert-manager.io"},
        },
    }


def _until(found: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout:g} s")


def _ready(custom: client.CustomObjectsApi, namespace: str, name: str) -> Any:
    item: Any = custom.get_namespaced_custom_object(
        "cert-manager.io", "v1", namespace, "certificates", name
    )
    for condition in (item.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return item
    return None


def test_a_certificate_is_issued_into_its_secret_and_a_refused_domain_is_not(
    k8s_api: client.ApiClient, namespace: str
) -> None:
    custom, core = client.CustomObjectsApi(k8s_api), client.CoreV1Api(k8s_api)
    domain = f"shop-{uuid.uuid4().hex[:8]}.customer.test"
    custom.create_namespaced_custom_object(
        "cert-manager.io", "v1", namespace, "certificates", _certificate("shop", domain)
    )
    issued = _until(lambda: _ready(custom, namespace, "shop"), "Ready")
    condition = issued["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("True", "Ready")
    secret = core.read_namespaced_secret("shop-tls", namespace)
    assert secret.type == "kubernetes.io/tls"
    assert secret.metadata is not None
    assert (secret.metadata.labels or {}).get("shop") == "shop"  # from the secretTemplate
    data = secret.data or {}
    leaf = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [domain]
    ca = x509.load_pem_x509_certificate(base64.b64decode(data["ca.crt"]))
    leaf.verify_directly_issued_by(ca)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.days == 90
    assert issued["status"]["notAfter"].startswith(f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M}")

    refused = f"refused-{uuid.uuid4().hex[:8]}.customer.test"
    listing = default_layout().data / "issuer" / REFUSED_FILE
    with listing.open("a") as out:
        out.write(f"{refused}\n")
    custom.create_namespaced_custom_object(
        "cert-manager.io", "v1", namespace, "certificates", _certificate("other", refused)
    )
    answer = _until(lambda: _ready(custom, namespace, "other"), "an answer")
    conditions = {c["type"]: c for c in answer["status"]["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
        "False",
        "DoesNotExist",
    )
    assert (conditions["Issuing"]["status"], conditions["Issuing"]["reason"]) == (
        "False",
        "Failed",
    )
    assert refused in conditions["Issuing"]["message"]
    assert answer["status"]["lastFailureTime"]
    with pytest.raises(client.ApiException) as missing:
        core.read_namespaced_secret("other-tls", namespace)
    assert missing.value.status == 404
