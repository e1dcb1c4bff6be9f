"""What the manifest builders are given: the instance as asked for, and its generated secrets."""

import hashlib
import re
from dataclasses import dataclass, field

from k8s.names import InstanceNames

MANAGED_BY = "instance-service"
INSTANCE_LABEL = "odoo.saas/instance-id"
"""Every object of an instance carries its id here (reconciliation and the watcher read it)."""


_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def customer_label(customer_id: str) -> str:
    """A label value for a customer id: itself when valid, else a stable digest of it."""
    if _LABEL_VALUE.match(customer_id):
        return customer_id
    return "c-" + hashlib.sha256(customer_id.encode()).hexdigest()[:40]


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
    admin_email: str | None = None
    modules: tuple[str, ...] = field(default_factory=tuple)
    neutralized: bool = False
    """A copy that must not reach the outside (a clone): no mail egress whatever the plan."""
    domains: tuple[str, ...] = ()
    """Customers' own domains it is served at besides its primary host (sorted)."""

    @property
    def names(self) -> InstanceNames:
        """The names of its objects."""
        return InstanceNames(self.instance_id)

    def instance_labels(self) -> dict[str, str]:
        """Labels every object of this instance carries, and only its objects."""
        return {
            "app.kubernetes.io/name": "odoo",
            "app.kubernetes.io/instance": self.names.base,
        }

    def selector(self) -> dict[str, str]:
        """Labels that select exactly this instance's server pods, not its Job's (never change)."""
        return {**self.instance_labels(), "app.kubernetes.io/component": "server"}

    def labels(self, component: str) -> dict[str, str]:
        """Recommended labels plus instance and customer, for every object of the instance."""
        return {
            **self.instance_labels(),
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/version": self.odoo_version,
            "app.kubernetes.io/part-of": "odoo-saas",
            "app.kubernetes.io/managed-by": MANAGED_BY,
            INSTANCE_LABEL: self.instance_id,
            "odoo.saas/customer-id": customer_label(self.customer_id),
        }

    def annotations(self) -> dict[str, str]:
        """The customer id as given (a label value cannot hold every valid one)."""
        return {"odoo.saas/customer-id": self.customer_id}


@dataclass(frozen=True)
class TenantCredentials:
    """Generated once per instance; they live only in its Kubernetes Secret."""

    database_password: str
    admin_password: str
    master_password: str  # odoo.conf `admin_passwd`: guards the (disabled) database manager

    def __repr__(self) -> str:
        """Never show the values."""
        return "TenantCredentials(***)"
