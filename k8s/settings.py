"""Settings of the Kubernetes side, one group of the service's settings."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, IPvAnyNetwork, field_validator


class KubernetesSettings(BaseModel):
    """How to reach the cluster and where tenants live."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kubeconfig: Path | None = Field(
        default=None,
        description="kubeconfig file; unset means in-cluster config, then ~/.kube/config",
    )
    context: str | None = Field(default=None, description="kubeconfig context to use")
    namespace: str = Field(default="odoo-tenants", description="namespace of tenant objects")
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    health_resolver: Literal["system", "endpointslice"] = Field(
        default="system",
        description="how health checks find an instance: the system resolver (in a cluster), "
        "or Service -> EndpointSlice -> pod, answered by the local stack's Odoo stand-in",
    )
    standin_host: str = Field(default="127.0.0.1", description="the stand-in's address")
    standin_port: int = Field(default=18069, ge=1, le=65535, description="the stand-in's port")
    health_deadline_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="how long an instance may take to pass"
    )
    ready_deadline_seconds: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="how long a started instance's pod may take to become Ready (Odoo's "
        "startup probe alone allows 300 s) before the command fails",
    )
    remove_orphans: bool = Field(
        default=False,
        description="fleet reconciliation deletes orphaned Deployments, Services, Ingresses, "
        "NetworkPolicies and Jobs (volumes are only ever reported)",
    )


class OdooImage(BaseModel):
    """The user and group an official Odoo image runs as, per version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uid: int = Field(ge=1)
    gid: int = Field(ge=1)


class PeerSelector(BaseModel):
    """Pods of one namespace, chosen by labels (none: every pod there): a NetworkPolicy peer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(min_length=1, max_length=63)
    pod_labels: dict[str, str] = Field(default_factory=dict)


class TenantSettings(BaseModel):
    """How tenant objects are built: images, domains, storage, network."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_registry: str = Field(
        default="docker.io/library",
        description="registry path of the official `odoo` images (one the cluster trusts)",
    )
    images: dict[str, OdooImage] = Field(
        # The official images run as `odoo`: uid 100/gid 101 from 18.0, 101/101 before.
        default_factory=lambda: {
            "16.0": OdooImage(uid=101, gid=101),
            "17.0": OdooImage(uid=101, gid=101),
            "18.0": OdooImage(uid=100, gid=101),
        },
        description="Odoo version -> the uid/gid its image runs as",
    )
    base_domain: str = Field(
        default="odoo.example.com", description="tenants are served at <subdomain>.<base_domain>"
    )
    ingress_class: str = Field(default="nginx", description="IngressClass of tenant Ingresses")
    tls_secret: str | None = Field(
        default=None, description="TLS Secret (e.g. a wildcard certificate) for the Ingress hosts"
    )
    storage_class: str | None = Field(
        default=None, description="StorageClass of the data volumes; unset: the cluster default"
    )
    ingress_namespace: str = Field(
        default="ingress-nginx", description="namespace of the ingress controller (allowed in)"
    )
    consumer_namespace: str = Field(
        default="instance-service", description="namespace of this service (allowed in: health)"
    )
    database_host: str = Field(
        default="postgres.databases.svc.cluster.local", description="tenant PostgreSQL host"
    )
    database_port: int = Field(default=5432, ge=1, le=65535)
    database_addresses: tuple[IPvAnyNetwork, ...] = Field(
        default=(),
        description="addresses (or CIDRs) of the tenant PostgreSQL: tenant pods may reach "
        "these on database_port; no default, since a wide range would open every database "
        "in the cluster (the service's own among them)",
    )
    database_peer: PeerSelector | None = Field(
        default=None,
        description="or the tenant PostgreSQL's pods, when it runs in the cluster",
    )
    dns_peer: PeerSelector = Field(
        default=PeerSelector(namespace="kube-system", pod_labels={"k8s-app": "kube-dns"}),
        description="the cluster DNS's pods, the one name service tenant pods may ask",
    )
    health_peer_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "instance-service"},
        description="labels of this service's pods in consumer_namespace: the health checks "
        "come from them",
    )
    mail_egress: bool = Field(
        default=True,
        description="this environment's servers may reach public addresses on SMTP "
        "25/465/587, IMAP 993 and HTTPS 443 (production: true; a staging environment: "
        "false); a neutralized instance never may",
    )
    api_server_addresses: tuple[IPvAnyNetwork, ...] = Field(
        default=(),
        description="the API server's addresses, when public: kept out of the mail egress "
        "(private ranges always are)",
    )
    cluster_cidrs: tuple[IPvAnyNetwork, ...] = Field(
        default=(),
        description="the cluster's pod and Service CIDRs and node addresses, when public: "
        "kept out of the mail egress (private ranges always are)",
    )
    backup_storage_addresses: tuple[IPvAnyNetwork, ...] = Field(
        default=(),
        description="addresses of the object storage that holds backups (the data Jobs may "
        "reach them on backup_storage_ports, and nothing else outside the cluster)",
    )
    backup_storage_ports: tuple[Annotated[int, Field(ge=1, le=65535)], ...] = Field(
        default=(443,), description="ports of the backup storage on those addresses"
    )
    init_deadline_seconds: int = Field(
        default=1800, ge=60, le=86400, description="longest a database initialisation Job runs"
    )
    service_image: str = Field(
        default="ghcr.io/odoo-saas/instance-service:0.1.0",
        description="this service's image: backup and restore Jobs run `instance-service job` "
        "in it (pin a digest in production)",
    )
    backup_claim: str = Field(
        default="instance-service-backups",
        description="PersistentVolumeClaim (in the tenant namespace) that held backups before "
        "they went to object storage: a restore of one of those archives mounts it",
    )
    backup_deadline_seconds: int = Field(
        default=3600, ge=60, le=86400, description="longest a backup or restore Job runs"
    )
    pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description="extra labels on every tenant pod: server, init, update, backup, restore "
        "(cost allocation, policy); "
        "they cannot replace the service's own app.kubernetes.io/* and odoo.saas/* labels",
    )

    @field_validator("pod_labels")
    @classmethod
    def _not_ours(cls, labels: dict[str, str]) -> dict[str, str]:
        taken = sorted(k for k in labels if k.startswith(("app.kubernetes.io/", "odoo.saas/")))
        if taken:
            raise ValueError(f"these labels belong to the service: {', '.join(taken)}")
        return labels


MIB = 1024 * 1024


class ImportSettings(BaseModel):
    """Bounds of a customer's archive, checked by the import Job before anything is restored
    (`INSTANCE_SERVICE_IMPORTS__*`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_members: int = Field(
        default=50_000,
        ge=3,
        le=10_000_000,
        description="members of the zip at most (dump.sql, manifest.json and the filestore's "
        "files and directories); Odoo keeps one file per attachment",
    )
    max_file_mib: int = Field(
        default=1024, ge=1, description="size of one filestore file at most, once unpacked"
    )
    max_total_mib: int = Field(
        default=64 * 1024,
        ge=1,
        description="size of the whole filestore at most, once unpacked (never more than the "
        "instance's storage either)",
    )

    def total_bytes(self, storage_gib: int) -> int:
        """The filestore's bound for an instance with `storage_gib` of storage."""
        return min(self.max_total_mib, storage_gib * 1024) * MIB


class DomainSettings(BaseModel):
    """Customers' own domains (`INSTANCE_SERVICE_DOMAINS__*`): how many, how a domain must point
    at the platform, which cert-manager issuer signs their certificates and how long it may take."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_instance: int = Field(
        default=20, ge=0, le=1000, description="customer domains one instance may have at most"
    )
    ingress_hostname: str | None = Field(
        default=None,
        description="the ingress's public name: a domain whose CNAME is this name points at the "
        "platform (e.g. ingress.odoo.example.com)",
    )
    ingress_addresses: tuple[IPvAnyAddress, ...] = Field(
        default=(),
        description="the ingress's public addresses: a domain whose A/AAAA records are all among "
        "them points at the platform",
    )
    resolver_address: IPvAnyAddress | None = Field(
        default=None,
        description="the DNS server that answers whether a domain points at the platform; unset: "
        "the system's resolvers (/etc/resolv.conf)",
    )
    resolver_port: int = Field(default=53, ge=1, le=65535)
    resolver_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="longest one DNS lookup may take"
    )
    issuer_kind: Literal["ClusterIssuer", "Issuer"] = Field(
        default="ClusterIssuer", description="kind of the cert-manager issuer"
    )
    issuer_name: str = Field(
        default="letsencrypt", description="name of the cert-manager issuer (e.g. an ACME one)"
    )
    certificate_ready_seconds: int = Field(
        default=600,
        ge=10,
        le=24 * 3600,
        description="how long a new certificate may take to be issued before the add fails "
        "(`certificate_failed`) and is rolled back",
    )

    @property
    def points_somewhere(self) -> bool:
        """Whether a domain can point at the platform at all (a name or addresses are set)."""
        return self.ingress_hostname is not None or bool(self.ingress_addresses)
