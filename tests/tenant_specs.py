"""One way to make an InstanceSpec in tests: the defaults, and only what a test changes."""

from typing import Any

from k8s.spec import InstanceSpec

INSTANCE = "0b8f3c1e-7c2d-4d5e-9f10-2a3b4c5d6e7f"


def tenant_spec(**changes: Any) -> InstanceSpec:
    """A valid small instance; keyword arguments replace its fields."""
    values: dict[str, Any] = {
        "instance_id": INSTANCE,
        "customer_id": "cus_4711",
        "subdomain": "acme",
        "odoo_version": "17.0",
        "cpu_millicores": 1000,
        "memory_mib": 2048,
        "storage_gib": 20,
    }
    values.update(changes)
    return InstanceSpec(**values)
