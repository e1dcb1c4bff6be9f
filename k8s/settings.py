"""Settings of the Kubernetes side, one group of the service's settings."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
    database_cidr: str = Field(
        default="10.0.0.0/8", description="addresses of the tenant PostgreSQL (egress allowed to)"
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
        description="PersistentVolumeClaim (in the tenant namespace) that holds backups",
    )
    backup_storage_gib: int = Field(default=100, ge=1, le=65536, description="its size")
    backup_access_mode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        default="ReadWriteMany",
        description="its access mode: backup Jobs of instances on different nodes need RWX",
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
