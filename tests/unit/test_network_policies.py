"""The tenant NetworkPolicies, by value: who selects which pod, and which flows each allows.

What these flows mean on a network is proven by a policy engine over the objects in a real
cluster (tests/handlers/test_isolation.py); this pins the builders' own decisions.
"""

from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from k8s.data_jobs import build_backup_job, build_import_job, build_restore_job
from k8s.network import (
    MAIL_PORTS,
    build_jobs_policy,
    build_network_policies,
    build_server_policy,
    public_blocks,
    tenant_network_problem,
)
from k8s.settings import ImportSettings, TenantSettings
from k8s.tenancy import build_default_deny, build_tenant_namespace
from k8s.workload import Manifest, build_deployment, build_init_job, build_update_job
from objectstore.locations import backup_location
from objectstore.settings import ObjectStorageSettings
from tests.tenant_specs import tenant_spec

STORAGE = ObjectStorageSettings()
LOCATION = backup_location("backups", "backups", "0b8f3c1e-7c2d-4d5e-9f10-2a3b4c5d6e7f", "b")

TENANTS = TenantSettings(
    database_addresses=("10.20.0.5/32",),
    api_server_addresses=("34.120.7.1/32",),
    cluster_cidrs=("10.244.0.0/16", "35.200.0.0/16"),
)
SPEC = tenant_spec()


def _selects(selector: Manifest, labels: dict[str, str]) -> bool:
    """A label selector's meaning (matchLabels and `In` expressions, what the policies use)."""
    wanted = selector.get("matchLabels", {})
    if any(labels.get(key) != value for key, value in wanted.items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _pod_labels(manifest: Manifest) -> dict[str, str]:
    labels: dict[str, str] = manifest["spec"]["template"]["metadata"]["labels"]
    return labels


def _pods(tenants: TenantSettings) -> dict[str, dict[str, str]]:
    return {
        "server": _pod_labels(build_deployment(SPEC, tenants, "t", replicas=1)),
        "init": _pod_labels(build_init_job(SPEC, tenants, "t")),
        "update": _pod_labels(build_update_job(SPEC, tenants, "t", "u")),
        "backup": _pod_labels(
            build_backup_job(SPEC, tenants, STORAGE, "t", "b", LOCATION, beside_server=False)
        ),
        "restore": _pod_labels(
            build_restore_job(SPEC, tenants, STORAGE, "t", name="r", location="/x", sha256="0" * 64)
        ),
        "import": _pod_labels(
            build_import_job(
                SPEC, tenants, STORAGE, ImportSettings(), "t", name="i", location=LOCATION
            )
        ),
    }


@pytest.mark.parametrize("extra_labels", [{}, {"team": "billing"}])
def test_every_pod_of_the_instance_is_selected_by_exactly_one_of_its_policies(
    extra_labels: dict[str, str],
) -> None:
    tenants = TENANTS.model_copy(update={"pod_labels": extra_labels})
    server, jobs = build_network_policies(SPEC, tenants, "t")
    for kind, labels in _pods(tenants).items():
        by_server = _selects(server["spec"]["podSelector"], labels)
        by_jobs = _selects(jobs["spec"]["podSelector"], labels)
        assert (by_server, by_jobs) == (kind == "server", kind != "server"), kind
    other = tenant_spec(instance_id="5a6b7c8d-0000-4000-8000-000000000001")
    other_server = build_deployment(other, tenants, "t", replicas=1)
    assert not _selects(server["spec"]["podSelector"], _pod_labels(other_server))
    assert not _selects(jobs["spec"]["podSelector"], _pod_labels(other_server))
    assert jobs["metadata"]["name"] == SPEC.names.job_policy != server["metadata"]["name"]


def test_the_server_is_reached_from_the_ingress_and_the_health_checks_only() -> None:
    ingress = build_server_policy(SPEC, TENANTS, "t")["spec"]["ingress"]
    assert ingress == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": 8069}, {"protocol": "TCP", "port": 8072}],
        },
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "instance-service"}
                    },
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "instance-service"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 8069}],
        },
    ]
    jobs = build_jobs_policy(SPEC, TENANTS, "t")["spec"]
    assert "Ingress" in jobs["policyTypes"]
    assert "ingress" not in jobs  # no rule: nothing comes in


def _egress(policy: Manifest) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = policy["spec"]["egress"]
    return rules


def test_the_database_is_reached_at_its_own_addresses_only_with_no_default_range() -> None:
    for policy in build_network_policies(SPEC, TENANTS, "t"):
        dns, database, *_ = _egress(policy)
        assert dns["to"] == [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ]
        assert {p["port"] for p in dns["ports"]} == {53}
        assert database == {
            "to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
    unset = TenantSettings()
    for policy in build_network_policies(SPEC, unset, "t"):
        assert all(p["port"] != 5432 for rule in _egress(policy) for p in rule["ports"])
    assert tenant_network_problem(unset) is not None
    assert tenant_network_problem(TENANTS) is None
    by_pods = TenantSettings(database_peer={"namespace": "databases", "pod_labels": {"app": "pg"}})
    assert tenant_network_problem(by_pods) is None
    (_, database) = _egress(build_jobs_policy(SPEC, by_pods, "t"))
    assert database["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "databases"}},
            "podSelector": {"matchLabels": {"app": "pg"}},
        }
    ]


def _allowed(blocks: list[Manifest], address: str) -> bool:
    """Whether an address falls in one of these ipBlocks and outside its exceptions."""
    ip = ip_address(address)
    for peer in blocks:
        block = peer["ipBlock"]
        cidr = ip_network(block["cidr"])
        if ip.version == cidr.version and ip in cidr:
            return not any(ip in ip_network(n) for n in block.get("except", []))
    return False


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("142.250.102.27", True),  # a mail provider
        ("2a00:1450:4013:c00::1b", True),
        ("169.254.169.254", False),  # cloud metadata
        ("fd00:ec2::254", False),
        ("10.96.0.1", False),  # a Service address
        ("172.20.1.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("34.120.7.1", False),  # the API server, public here (setting)
        ("35.200.1.2", False),  # the cluster's own public range (setting)
    ],
)
def test_mail_goes_to_public_addresses_only(address: str, public: bool) -> None:
    (*_, mail) = _egress(build_server_policy(SPEC, TENANTS, "t"))
    assert [p["port"] for p in mail["ports"]] == list(MAIL_PORTS) == [25, 465, 587, 993, 443]
    assert _allowed(mail["to"], address) is public


def test_a_range_inside_a_private_one_is_not_repeated_among_the_exceptions() -> None:
    ipv4, ipv6 = public_blocks([ip_network("10.244.0.0/16"), ip_network("35.200.0.0/16")])
    assert "10.244.0.0/16" not in ipv4["ipBlock"]["except"]
    assert "35.200.0.0/16" in ipv4["ipBlock"]["except"]
    assert ipv6["ipBlock"]["cidr"] == "::/0"


def test_no_mail_for_a_staging_environment_or_a_neutralized_copy() -> None:
    def ports(policy: Manifest) -> set[int]:
        return {p["port"] for rule in _egress(policy) for p in rule["ports"]}

    assert ports(build_server_policy(SPEC, TENANTS, "t")) == {53, 5432, *MAIL_PORTS}
    staging = TENANTS.model_copy(update={"mail_egress": False})
    assert ports(build_server_policy(SPEC, staging, "t")) == {53, 5432}
    clone = tenant_spec(neutralized=True)
    assert ports(build_server_policy(clone, TENANTS, "t")) == {53, 5432}


def test_jobs_reach_dns_the_database_and_the_backup_storage_only() -> None:
    assert [
        rule["ports"][0]["port"] for rule in _egress(build_jobs_policy(SPEC, TENANTS, "t"))
    ] == [
        53,
        5432,
    ]
    storage = TENANTS.model_copy(
        update={"backup_storage_addresses": (ip_network("52.95.110.1/32"),)}
    )
    (*_, rule) = _egress(build_jobs_policy(SPEC, storage, "t"))
    assert rule == {
        "to": [{"ipBlock": {"cidr": "52.95.110.1/32"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    }


def test_the_namespace_is_restricted_and_denies_by_default() -> None:
    namespace = build_tenant_namespace("odoo-tenants")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deny = build_default_deny("odoo-tenants")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
