"""What the manifest builders are given: the instance as asked for, and its generated secrets."""

from dataclasses import dataclass, field

from k8s.names import InstanceNames

MANAGED_BY = "instance-service"


@dataclass(frozen=True)
class InstanceSpec:
    """One tenant's Odoo, as the builders need it."""

    instance_id: str
    customer_id: str
    subdomain: str
    odoo_version: str
    cpu_millicores: int
    memory_mib: int
    storage_gib: int
    demo_data: bool = False
    language: str | None = None
    modules: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> InstanceNames:
        """The names of its objects."""
        return InstanceNames(self.instance_id)

    def selector(self) -> dict[str, str]:
        """Labels that select exactly this instance's pods (stable: never change them)."""
        return {
            "app.kubernetes.io/name": "odoo",
            "app.kubernetes.io/instance": self.names.base,
        }

    def labels(self, component: str) -> dict[str, str]:
        """Recommended labels plus instance and customer, for every object of the instance."""
        return {
            **self.selector(),
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/version": self.odoo_version,
            "app.kubernetes.io/part-of": "odoo-saas",
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "odoo.saas/instance-id": self.instance_id,
            "odoo.saas/customer-id": self.customer_id,
        }


@dataclass(frozen=True)
class TenantCredentials:
    """Generated once per instance; they live only in its Kubernetes Secret."""

    database_password: str
    admin_password: str
    master_password: str  # odoo.conf `admin_passwd`: guards the (disabled) database manager

    def __repr__(self) -> str:
        """Never show the values."""
        return "TenantCredentials(***)"
