"""Pure builders of the tenant NetworkPolicies: what an instance's pods may reach, and who them.

The tenant namespace denies every flow by default (k8s/tenancy.py, applied by deploy/ and by the
local stack); each instance adds two policies that allow what it needs:

- `<base>` selects its server pods: in from the ingress controller's namespace (8069, 8072) and
  from this service's pods (8069, the health checks); out to the cluster DNS, its PostgreSQL
  and, where the environment allows it and the instance is not neutralized, public addresses on
  the mail and HTTPS ports (SMTP 25/465/587, IMAP 993, HTTPS 443).
- `<base>-jobs` selects its Jobs' pods (init, update, backup, restore, import): nothing in; out
  to the cluster DNS, its PostgreSQL and the backup storage (addresses from settings), nothing
  else.

"Public" is every address but the ranges that are not globally reachable (private, shared,
loopback, link-local with the cloud metadata endpoint, documentation, multicast, reserved, and
the IPv6 forms that reach IPv4 ranges), the cluster's own CIDRs and the API server's addresses
(settings, for clusters whose addresses are public). PostgreSQL is reached only at the
addresses (or pods) the settings name: there is no default range, so the state database, the
broker and any other PostgreSQL stay closed to tenants.
"""

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_network

from k8s.settings import PeerSelector, TenantSettings
from k8s.spec import INSTANCE_LABEL, InstanceSpec
from k8s.workload import Manifest, instance_metadata

Network = IPv4Network | IPv6Network

ODOO_PORTS = (8069, 8072)
HEALTH_PORT = 8069
MAIL_PORTS = (25, 465, 587, 993, 443)
"""SMTP, SMTP over TLS, submission, IMAPS, and HTTPS (payment providers, OAuth, IAP)."""
JOB_COMPONENTS = ("database-init", "database-update", "backup", "restore", "import")
"""`app.kubernetes.io/component` of an instance's Job pods (k8s/workload.py, k8s/data_jobs.py)."""

NOT_PUBLIC: tuple[Network, ...] = tuple(
    ip_network(cidr)
    for cidr in (
        # IPv4 (RFC 6890 and the IANA special-purpose registry): this network, private,
        # shared (carrier-grade NAT), loopback, link-local (169.254.169.254: cloud metadata),
        # IETF assignments, documentation, benchmarking, multicast, reserved and broadcast.
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        # IPv6: unspecified, loopback, NAT64 (reaches IPv4 ranges), discard, IETF assignments
        # (Teredo among them), documentation, 6to4, unique local, link-local and multicast.
        # Not the IPv4-mapped ::ffff:0:0/96: such a connection leaves as IPv4, which the IPv4
        # block judges (and the API server reads that prefix as IPv4, refusing it here).
        "::/128",
        "::1/128",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)


def public_blocks(excluded: Iterable[Network]) -> list[Manifest]:
    """ipBlock peers of every public address, less `excluded` (beyond the non-public ranges)."""
    blocks = []
    for everything in (ip_network("0.0.0.0/0"), ip_network("::/0")):
        kept = [n for n in NOT_PUBLIC if n.version == everything.version]
        for extra in excluded:
            if extra.version != everything.version or extra.prefixlen == 0:
                continue
            if not any(extra.subnet_of(n) for n in kept):  # type: ignore[arg-type]
                kept.append(extra)
        blocks.append({"ipBlock": {"cidr": str(everything), "except": [str(n) for n in kept]}})
    return blocks


def _peer(selector: PeerSelector) -> Manifest:
    peer: Manifest = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": selector.namespace}}
    }
    if selector.pod_labels:
        peer["podSelector"] = {"matchLabels": dict(selector.pod_labels)}
    return peer


def _tcp(ports: Iterable[int]) -> list[Manifest]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _addresses(networks: Iterable[Network]) -> list[Manifest]:
    return [{"ipBlock": {"cidr": str(network)}} for network in networks]


def _policy(
    spec: InstanceSpec, name: str, namespace: str, selector: Manifest, rules: Manifest
) -> Manifest:
    """One of the instance's NetworkPolicies: both directions governed, `rules` allowed."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": instance_metadata(spec, name, namespace, spec.labels("network")),
        # A direction listed with no rule allows nothing (an empty list would be dropped by
        # the API server, and read back as drift): `rules` holds only non-empty ones.
        "spec": {"podSelector": selector, "policyTypes": ["Ingress", "Egress"], **rules},
    }


def _dns(tenants: TenantSettings) -> Manifest:
    return {
        "to": [_peer(tenants.dns_peer)],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def _database(tenants: TenantSettings) -> list[Manifest]:
    """Out to the tenant PostgreSQL; none when the settings name neither addresses nor pods
    (`consume` refuses to start then: tenant_network_problem)."""
    peers = _addresses(tenants.database_addresses)
    if tenants.database_peer is not None:
        peers.append(_peer(tenants.database_peer))
    if not peers:
        return []
    return [{"to": peers, "ports": _tcp([tenants.database_port])}]


def mail_allowed(spec: InstanceSpec, tenants: TenantSettings) -> bool:
    """Whether the instance's server may reach public addresses on the mail and HTTPS ports."""
    return tenants.mail_egress and not spec.neutralized


def build_server_policy(spec: InstanceSpec, tenants: TenantSettings, namespace: str) -> Manifest:
    """The server pods: in from the ingress and the health checks; out to DNS, PostgreSQL, mail."""
    health_peer = PeerSelector(
        namespace=tenants.consumer_namespace, pod_labels=tenants.health_peer_labels
    )
    egress = [_dns(tenants), *_database(tenants)]
    if mail_allowed(spec, tenants):
        excluded = (*tenants.api_server_addresses, *tenants.cluster_cidrs)
        egress.append({"to": public_blocks(excluded), "ports": _tcp(MAIL_PORTS)})
    ingress = [
        {
            "from": [_peer(PeerSelector(namespace=tenants.ingress_namespace))],
            "ports": _tcp(ODOO_PORTS),
        },
        {"from": [_peer(health_peer)], "ports": _tcp([HEALTH_PORT])},
    ]
    selector = {"matchLabels": spec.selector()}
    rules = {"ingress": ingress, "egress": egress}
    return _policy(spec, spec.names.base, namespace, selector, rules)


def build_jobs_policy(spec: InstanceSpec, tenants: TenantSettings, namespace: str) -> Manifest:
    """The Jobs' pods: nothing in; out to DNS, PostgreSQL and the backup storage only."""
    egress = [_dns(tenants), *_database(tenants)]
    if tenants.backup_storage_addresses:
        egress.append(
            {
                "to": _addresses(tenants.backup_storage_addresses),
                "ports": _tcp(tenants.backup_storage_ports),
            }
        )
    selector = {
        "matchLabels": {INSTANCE_LABEL: spec.instance_id},
        "matchExpressions": [
            {"key": "app.kubernetes.io/component", "operator": "In", "values": list(JOB_COMPONENTS)}
        ],
    }
    return _policy(spec, spec.names.job_policy, namespace, selector, {"egress": egress})


def build_network_policies(
    spec: InstanceSpec, tenants: TenantSettings, namespace: str
) -> tuple[Manifest, Manifest]:
    """Both of an instance's policies: the server's, then its Jobs'."""
    return (
        build_server_policy(spec, tenants, namespace),
        build_jobs_policy(spec, tenants, namespace),
    )


def tenant_network_problem(tenants: TenantSettings) -> str | None:
    """What in the settings would leave tenant pods unable to work, if anything."""
    if not tenants.database_addresses and tenants.database_peer is None:
        return (
            "tenant pods have no way to PostgreSQL: set INSTANCE_SERVICE_TENANTS__DATABASE_"
            'ADDRESSES (e.g. ["10.20.0.5/32"]) or __DATABASE_PEER (e.g. {"namespace": '
            '"databases", "pod_labels": {"app": "postgres"}})'
        )
    return None
