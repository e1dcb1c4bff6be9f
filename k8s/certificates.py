"""cert-manager Certificates of customers' own domains: the pure builder, and how to read one.

One Certificate per domain (not one for all of an instance's domains): a domain added or removed
never reissues the others, and an issuer that refuses one domain fails that domain alone. The
issuer writes the key pair to the Secret the Certificate names; `secretTemplate` gives that
Secret the instance's labels, so whatever lists an instance's objects (delete, reconcile) finds
it. The Ingress names the Secret for the domain's host (k8s/exposure.py).
"""

from datetime import UTC, datetime
from typing import Any

from k8s.settings import DomainSettings
from k8s.spec import InstanceSpec
from k8s.workload import Manifest, instance_metadata

DOMAIN_ANNOTATION = "odoo.saas/domain"
"""The domain a Certificate serves, as given (its name holds only a digest of it)."""
COMPONENT = "domain"
"""The `app.kubernetes.io/component` of a domain's Certificate and TLS Secret."""

Document = dict[str, Any]


def build_certificate(
    spec: InstanceSpec, domain: str, settings: DomainSettings, namespace: str
) -> Manifest:
    """The Certificate for `domain` of the instance, against the configured issuer."""
    labels = spec.labels(COMPONENT)
    metadata = instance_metadata(spec, spec.names.certificate(domain), namespace, labels)
    metadata["annotations"] = {**metadata["annotations"], DOMAIN_ANNOTATION: domain}
    certificate_spec: Manifest = {
        "secretName": spec.names.certificate_secret(domain),
        "secretTemplate": {"labels": labels, "annotations": {DOMAIN_ANNOTATION: domain}},
        "dnsNames": [domain],
        "usages": ["digital signature", "key encipherment", "server auth"],
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "issuerRef": {
            "group": "cert-manager.io",
            "kind": settings.issuer_kind,
            "name": settings.issuer_name,
        },
    }
    if len(domain) <= 64:  # a certificate's CN holds 64 characters at most
        certificate_spec["commonName"] = domain
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": metadata,
        "spec": certificate_spec,
    }


def domain_of(certificate: Document) -> str | None:
    """The domain a Certificate of ours serves (None: not one of ours)."""
    annotations = certificate.get("metadata", {}).get("annotations") or {}
    domain = annotations.get(DOMAIN_ANNOTATION)
    return domain if isinstance(domain, str) else None


def _ready_condition(certificate: Document) -> Document | None:
    for condition in certificate.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


def issued(certificate: Document) -> bool:
    """Ready for the generation asked for: its Secret holds a certificate for the current spec."""
    condition = _ready_condition(certificate)
    if condition is None or condition.get("status") != "True":
        return False
    generation = certificate.get("metadata", {}).get("generation")
    observed = condition.get("observedGeneration")
    return observed is None or generation is None or observed >= generation


def refusal(certificate: Document) -> str | None:
    """Why the issuer will not issue it, when it says so for good (None: still trying, or issued).

    cert-manager marks a failed issuance with `Issuing` False and a `lastFailureTime`, and
    retries with backoff; a refusal for the current generation is taken as the answer.
    """
    status = certificate.get("status", {})
    if status.get("lastFailureTime") is None:
        return None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Issuing" and condition.get("status") == "False":
            reason, message = condition.get("reason", ""), condition.get("message", "")
            return f"{reason}: {message}".strip(": ") or "the issuer refused it"
    condition = _ready_condition(certificate)
    if condition is not None and condition.get("status") == "False":
        return str(condition.get("message") or condition.get("reason") or "not issued")
    return None


def not_after(certificate: Document) -> datetime | None:
    """When the issued certificate expires (None: not issued yet)."""
    value = certificate.get("status", {}).get("notAfter")
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
