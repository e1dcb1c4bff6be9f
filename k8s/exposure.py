"""Pure builders of how an instance is reached: Service and Ingress (k8s/network.py: policies).

The database manager is not exposed: odoo.conf disables it (`list_db = False`, a random
`admin_passwd`), so `/web/database*` answers nothing useful through the Ingress either.
"""

from k8s.settings import TenantSettings
from k8s.spec import InstanceSpec
from k8s.workload import Manifest, instance_metadata


def build_service(spec: InstanceSpec, namespace: str) -> Manifest:
    """ClusterIP Service: 8069 for HTTP, 8072 for the websocket (gevent) worker."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": instance_metadata(spec, spec.names.base, namespace, spec.labels("server")),
        "spec": {
            "type": "ClusterIP",
            "selector": spec.selector(),
            "ports": [
                {"name": "http", "port": 8069, "targetPort": "http", "protocol": "TCP"},
                {"name": "websocket", "port": 8072, "targetPort": "websocket", "protocol": "TCP"},
            ],
        },
    }


def host_of(spec: InstanceSpec, tenants: TenantSettings) -> str:
    """The public host name of an instance."""
    return f"{spec.subdomain}.{tenants.base_domain}"


def build_ingress(spec: InstanceSpec, tenants: TenantSettings, namespace: str) -> Manifest:
    """`/websocket` to 8072, everything else to 8069, on `<subdomain>.<base domain>` and on
    each of the customer's own domains, each of those with the TLS Secret of its Certificate
    (k8s/certificates.py). Odoo's `web.base.url` stays the primary host's."""
    host = host_of(spec, tenants)

    def path(prefix: str, port: str) -> Manifest:
        return {
            "path": prefix,
            "pathType": "Prefix",
            "backend": {"service": {"name": spec.names.base, "port": {"name": port}}},
        }

    def rule(name: str) -> Manifest:
        return {
            "host": name,
            "http": {"paths": [path("/websocket", "websocket"), path("/", "http")]},
        }

    tls = [{"hosts": [host], "secretName": tenants.tls_secret}] if tenants.tls_secret else []
    tls += [
        {"hosts": [domain], "secretName": spec.names.certificate_secret(domain)}
        for domain in spec.domains
    ]
    ingress_spec: Manifest = {
        "ingressClassName": tenants.ingress_class,
        "rules": [rule(host), *(rule(domain) for domain in spec.domains)],
    }
    if tls:
        ingress_spec["tls"] = tls
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": instance_metadata(spec, spec.names.base, namespace, spec.labels("server")),
        "spec": ingress_spec,
    }
