"""The tenant namespace's own shape: Pod Security `restricted`, and a NetworkPolicy denying all.

Applied by deploy/ (deploy/base/namespaces.yaml, deploy/base/tenant-network.yaml) and by the local
stack, not by the handlers: the namespace is the operator's. With it, a pod the service's account
creates there is admitted only if it meets the `restricted` profile (the API server's Pod Security
admission decides), and a pod reaches, or is reached by, only what its instance's policies allow
(k8s/network.py).
"""

from k8s.workload import Manifest

POD_SECURITY = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")
}
"""Enforced, and also audited and warned of (a Deployment or Job whose pods would be refused is
warned of when it is applied, not only when its pods fail to appear)."""
DEFAULT_DENY = "default-deny"


def build_tenant_namespace(name: str) -> Manifest:
    """The tenant namespace, with its Pod Security labels."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(POD_SECURITY)},
    }


def build_default_deny(namespace: str) -> Manifest:
    """Every pod of the namespace: nothing in, nothing out, unless a policy allows it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": DEFAULT_DENY,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "odoo-saas"},
        },
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
